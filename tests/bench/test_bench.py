import dlib
import numpy as np

from facedeid.bench import runner
from facedeid.bench.attack import lbph_rank1, nearest_mean_rank1
from facedeid.bench.datasets import lfw_pairs
from facedeid.faces.detect import detect
from facedeid.identity.recognizers import DlibRecognizer
from facedeid.media.images import read_image
from facedeid.models import dlib_model_path


def test_dlib_figures_agree_with_direct_dlib():
    """Our DlibRecognizer on HOG faces equals dlib's own detector → shape → descriptor chain."""
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model_path("shape5")))
    net = dlib.face_recognition_model_v1(str(dlib_model_path("resnet")))
    rec = DlibRecognizer()
    for pair in lfw_pairs()[:5]:
        img = read_image(pair.a).rgb
        r = max(det(img, 2), key=lambda x: x.area())
        direct = np.array(net.compute_face_descriptor(img, sp(img, r)))
        face = max(detect(img, "hog"), key=lambda f: f.box.area)
        assert np.abs(rec.embed(img, [face])[0] - direct).max() < 1e-6


def test_attackers_on_separable_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 5
    gal = np.concatenate([c + rng.normal(size=(4, 16)) for c in centres])
    gid = [str(i) for i in range(5) for _ in range(4)]
    probes = centres + rng.normal(size=(5, 16))
    res = nearest_mean_rank1(gal, gid, probes, [str(i) for i in range(5)], "euclidean")
    assert res.rank1 == 1.0 and res.chance == 0.2
    imgs = [np.full((32, 32), 40 * i, np.uint8) + rng.integers(0, 5, (32, 32), dtype=np.uint8) for i in range(5) for _ in range(2)]
    ids = [str(i) for i in range(5) for _ in range(2)]
    assert lbph_rank1(imgs, ids, imgs[::2], ids[::2]).rank1 == 1.0


def test_bench_run_writes_report(tmp_path):
    rows = runner.run(["mask"], tmp_path, n_pairs=8, n_identities=4, detectors=("centerface",), workers=1)
    by = {(r["method"], r["recognizer"]): r for r in rows}
    assert by[("original", "dlib")]["rank1"] == 1.0
    m = by[("mask", "dlib")]
    assert m["sdr"] == 1.0 and m["tar"] == 0.0 and m["fdr_centerface"] <= 0.25
    for name in ("report.md", "report.html", "results.csv", "contact_sheet.png", "tradeoff_dlib.png"):
        assert (tmp_path / name).stat().st_size > 100
