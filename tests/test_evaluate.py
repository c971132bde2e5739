import shutil

import numpy as np
import pytest

from facedeid.cli import main
from facedeid.evaluation import evaluate, pairs_from_file
from facedeid.identity.recognizers import DlibRecognizer


@pytest.fixture(scope="module")
def folders(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("ev")
    orig = root / "orig"
    for name in ("George_W_Bush", "Colin_Powell"):
        (orig / name).mkdir(parents=True)
        for f in sorted((data / "lfw" / "images" / name).glob("*.jpg"))[:2]:
            shutil.copy(f, orig / name / f.name)
    assert main(["anonymize", str(orig), "-o", str(root / "mask"), "--method", "mask", "-q"]) == 0
    return orig, root / "mask"


def test_identical_folders_give_zero_distance(folders):
    orig, _ = folders
    ev = evaluate(orig, orig, recognizers=[DlibRecognizer()], detectors=["centerface"])
    s = ev.summary
    assert s["images"] == 4 and s["faces"] >= 4
    assert s["id_distance_dlib"] == pytest.approx(0.0, abs=1e-6) and s["sdr_dlib"] == 0.0
    assert s["fdr_centerface"] == 1.0 and s["psnr"] == float("inf") and s["ssim"] == pytest.approx(1.0)
    assert s["landmark_all"] == 0.0 and s["pose_error"] == pytest.approx(0.0, abs=1e-6)
    assert s["emotion_same"] == 1.0 and s["gender_same"] == 1.0
    assert s["fid"]["available"] is False and s["fid"]["value"] is None and s["fid"]["reason"].startswith("not available")
    assert s["lpips"]["available"] is False and s["lpips"]["value"] is None


def test_masked_faces_are_deidentified(folders):
    orig, mask = folders
    ev = evaluate(orig, mask, recognizers=[DlibRecognizer()], detectors=["hog"])
    assert ev.summary["sdr_dlib"] >= 0.75 and ev.summary["id_distance_dlib"] > 0.6
    assert ev.summary["fdr_hog"] <= 0.25
    assert ev.summary["psnr_face"] < ev.summary["psnr"]
    assert ev.summary["landmark_all"] > 1.0
    csv_text = ev.to_csv()
    assert csv_text.splitlines()[0].startswith("file,face,id_distance_dlib")
    assert len(csv_text.splitlines()) == ev.summary["faces"] + 1


def test_pairs_verification(folders, tmp_path):
    orig, mask = folders
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t2\nGeorge_W_Bush\t1\t2\nColin_Powell\t1\t2\nGeorge_W_Bush\t1\tColin_Powell\t2\n")
    assert len(pairs_from_file(pairs)) == 3
    ev = evaluate(orig, mask, pairs=pairs, recognizers=[DlibRecognizer()], detectors=["hog"])
    v = ev.summary["verification"]["dlib"]
    assert v["original"]["tar"] == 1.0 and v["original"]["far"] == 0.0
    assert v["anonymized"]["tar"] <= 0.5


def test_cli_evaluate_json(folders, capsys):
    import json

    orig, mask = folders
    assert main(["evaluate", "--original", str(orig), "--anonymized", str(mask), "--json", "--detectors", "hog"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["images"] == 4 and "sdr_mobilefacenet" in out["summary"]
