"""k-Same family (book Ch. 3.1.2) on real LFW faces: clusters of ≥ k people, shared aggregates,
re-identification ≤ 1/k, untouched background, identity-aware clustering, CLI."""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest
from scipy import ndimage

from facedeid.cli import main
from facedeid.errors import BadArguments
from facedeid.faces.detect import detect
from facedeid.faces.masks import face_region
from facedeid.identity.recognizers import DlibRecognizer
from facedeid.media.images import read_image
from facedeid.methods import Context, get_method, registry
from facedeid.methods.ksame import (
    CROP, DLIB_KEY, Eigenspace, aligned_crop, face_mask, greedy_partition, k_same_clusters, mouth_openness,
    person_weights, piecewise_affine, read_labels,
)
from facedeid.set_pipeline import anonymize_set

VARIANTS = ["ksame-pixel", "ksame-eigen", "ksame-select", "ksame-m"]
N_PEOPLE = 100
K = 10


# --------------------------------------------------------------------------- fixtures (module scope)
def _largest_face(img: np.ndarray):
    faces = detect(img, "centerface", with_68=True)
    return max(faces, key=lambda f: f.box.area) if faces else None


def _with_dlib(images, faces):
    """Faces carrying their dlib embedding (the methods reuse it instead of recomputing)."""
    rec = DlibRecognizer()
    return [dataclasses.replace(f, extra={DLIB_KEY: rec.embed(img, [f])[0]}) for img, f in zip(images, faces)]


@pytest.fixture(scope="module")
def lfw_set(data):
    """100 LFW people, one image each: paths, RGB images, one face each (68 points, dlib embedding)."""
    people = sorted((data / "lfw" / "images").iterdir())
    step = len(people) // (N_PEOPLE + 5)
    paths, images, faces = [], [], []
    for person in people[::step]:
        if len(paths) == N_PEOPLE:
            break
        path = sorted(person.glob("*.jpg"))[0]
        img = read_image(path).rgb
        face = _largest_face(img)
        if face is not None:
            paths.append(path), images.append(img), faces.append(face)
    assert len(paths) == N_PEOPLE
    return paths, images, _with_dlib(images, faces)


@pytest.fixture(scope="module")
def runs(lfw_set):
    """Cached set runs: spec → SetResult on the whole LFW set."""
    paths, images, faces = lfw_set
    cache: dict[str, object] = {}

    def run(spec: str):
        if spec not in cache:
            cache[spec] = anonymize_set(images, spec, faces=[[f] for f in faces], names=[str(p) for p in paths])
        return cache[spec]

    return run


def _clusters(result) -> list[np.ndarray]:
    return [np.array(c) for c in result.report["ksame"]["clusters"]]


# --------------------------------------------------------------------------- registry and parameters
def test_variants_registered_with_book_reference():
    reg = registry()
    for name in VARIANTS:
        assert name in reg and "3.1.2" in reg[name].reference
        assert get_method(name).params.k == 10


@pytest.mark.parametrize("bad", [{"k": "1"}, {"space": "colour"}, {"identities": "maybe"}, {"region": "circle"}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(BadArguments):
        get_method("ksame-pixel", bad)


def test_single_image_use_is_refused(face_image):
    with pytest.raises(BadArguments, match="anonymize-set"):
        get_method("ksame-pixel").apply(face_image, [], Context())


# --------------------------------------------------------------------------- clustering (k-Same, Newton et al.)
@pytest.mark.parametrize("n,k", [(10, 10), (23, 5), (57, 10), (40, 3), (7, 2)])
def test_greedy_partition_clusters_of_at_least_k(n, k):
    pts = np.random.default_rng(n).normal(size=(n, 6))
    clusters = greedy_partition(pts, k)
    assert sorted(np.concatenate(clusters).tolist()) == list(range(n))
    assert all(len(c) >= k for c in clusters) and all(len(c) < 2 * k for c in clusters)


def test_clusters_hold_k_distinct_people_and_keep_each_person_together():
    rng = np.random.default_rng(3)
    persons = np.repeat(np.arange(14), rng.integers(1, 5, 14))  # people seen 1–4 times
    feats = rng.normal(size=(len(persons), 8))
    clusters = k_same_clusters(feats, persons, 4)
    assert sorted(np.concatenate(clusters).tolist()) == list(range(len(persons)))
    for c in clusters:
        assert len(set(persons[c])) >= 4
    for q in np.unique(persons):
        assert sum(q in persons[c] for c in clusters) == 1
    with pytest.raises(BadArguments, match="at least k = 15 distinct people"):
        k_same_clusters(feats, persons, 15)


def test_person_weights_give_every_person_the_same_share():
    w = person_weights(np.array([5, 5, 5, 9]))
    assert np.isclose(w.sum(), 1.0) and np.allclose(w, [1 / 6, 1 / 6, 1 / 6, 1 / 2])


def test_eigenspace_keeps_the_requested_variance():
    x = np.random.default_rng(0).normal(size=(30, 200))
    full = Eigenspace.fit(x, 1.0)
    assert np.allclose(full.reconstruct(full.project(x)), x, atol=1e-8)
    assert Eigenspace.fit(x, 0.5).basis.shape[0] < full.basis.shape[0]


def test_piecewise_affine_moves_points_and_is_identity_when_shapes_agree():
    from scipy.spatial import Delaunay

    ys, xs = np.mgrid[0:CROP, 0:CROP].astype(np.float32)
    img = np.dstack([xs, ys, np.zeros_like(xs)])  # every pixel holds its own coordinates
    e = CROP - 1.0
    src = np.array([[0, 0], [e, 0], [e, e], [0, e], [60, 70], [130, 120]], float)
    dst = src.copy()
    dst[4] = [80, 90]
    tris = Delaunay(src).simplices
    assert np.allclose(piecewise_affine(img, src, src, tris), img, atol=1e-2)
    warped = piecewise_affine(img, src, dst, tris)
    assert np.allclose(warped[90, 80, :2], [60, 70], atol=0.05)  # what was at src now sits at dst
    assert np.allclose(warped[120, 130, :2], [130, 120], atol=0.05)  # a fixed point stays


def test_labels_csv_matches_trailing_paths(data, tmp_path):
    names = [str(data / "lfw" / "images" / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg"), str(tmp_path / "unknown.jpg")]
    labels = read_labels(str(data / "lfw" / "lfw_subset_gender.csv"), names, ["identity", "gender"])
    assert labels == {"identity": ["Abdullah_Gul", None], "gender": ["male", None]}


# --------------------------------------------------------------------------- the whole set (≥ 100 LFW people)
@pytest.mark.parametrize("name", VARIANTS)
def test_every_face_is_in_a_cluster_of_at_least_k_people(name, runs, lfw_set):
    res = runs(f"{name}:k={K}")
    ks = res.report["ksame"]
    clusters = _clusters(res)
    assert sorted(np.concatenate(clusters).tolist()) == list(range(len(lfw_set[2])))
    assert all(len(c) >= K for c in clusters) and min(ks["people_per_cluster"]) >= K
    assert "1/10" in ks["guarantee"]


def test_members_of_a_cluster_share_one_aggregate(runs, lfw_set):
    """Without colour matching, the aligned face of every output equals its cluster's aggregate."""
    faces = lfw_set[2]
    res = runs(f"ksame-pixel:k={K},colour=false")
    inner = ndimage.binary_erosion(face_mask(), iterations=16)
    crops = [aligned_crop(r.image, f)[0][inner] for r, f in zip(res.results, faces)]
    same, other = [], []
    clusters = _clusters(res)
    for ci, c in enumerate(clusters):
        for a, b in zip(c[:-1], c[1:]):
            same.append(np.abs(crops[a] - crops[b]).mean())
        other.append(np.abs(crops[c[0]] - crops[clusters[(ci + 1) % len(clusters)][0]]).mean())
    assert np.median(same) < 4.0 and np.median(other) > 3 * np.median(same), (np.median(same), np.median(other))


def _reid_rate(faces, result) -> float:
    """Rank-1 identification of each output among the originals with dlib's recognizer."""
    rec = DlibRecognizer()
    gallery = np.stack([f.extra[DLIB_KEY] for f in faces])
    probes = np.concatenate([rec.embed(r.image, [f]) for r, f in zip(result.results, faces)])
    d = ((probes[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
    return float(np.mean(d.argmin(1) == np.arange(len(faces))))


@pytest.mark.parametrize(
    "name", ["ksame-m", *(pytest.param(v, marks=pytest.mark.slow) for v in ["ksame-pixel", "ksame-eigen", "ksame-select"])]
)
def test_reidentification_rate_is_at_most_one_over_k(name, runs, lfw_set):
    faces = lfw_set[2]
    rate = _reid_rate(faces, runs(f"{name}:k={K}"))
    n = len(faces)
    margin = 2.33 * np.sqrt((1 / K) * (1 - 1 / K) / n)  # one-sided 99 % binomial margin
    assert rate <= 1 / K + margin, rate


@pytest.mark.parametrize("name", ["ksame-pixel", "ksame-m"])
def test_face_changes_and_background_does_not(name, runs, lfw_set):
    _, images, faces = lfw_set
    res = runs(f"{name}:k={K}")
    p = get_method(name).params
    for img, face, r in list(zip(images, faces, res.results))[:25]:
        region = face_region(face, img.shape, p.region, p.margin, p.feather)
        support = np.zeros(img.shape[:2], bool)
        support[region.slices] = region.alpha > 0
        core = np.zeros_like(support)
        core[region.slices] = region.core
        diff = np.abs(r.image.astype(int) - img.astype(int)).sum(-1)
        assert diff[core].mean() > 3
        outside = ~ndimage.binary_dilation(support, iterations=1)
        assert np.array_equal(r.image[outside], img[outside])


def test_select_keeps_gender_inside_clusters(runs, lfw_set, data):
    """Identities from the CSV (dlib matching off: its false matches would join people of either gender)."""
    paths = lfw_set[0]
    gender_csv = data / "lfw" / "lfw_subset_gender.csv"
    res = runs(f"ksame-select:k={K},labels={gender_csv},column=gender,identities=none")
    ks = res.report["ksame"]
    assert set(ks["groups"]) == {"male", "female"}
    assert set(ks["attribute_not_kept"]) <= {"unlabelled"}  # a face without a gender joins the largest group
    with open(gender_csv, newline="") as fh:
        gender = {r["identity"]: r["gender"] for r in csv.DictReader(fh)}
    for c in _clusters(res):
        assert len({gender.get(paths[i].parent.name) for i in c} - {"", None}) == 1


def test_select_by_expression_groups_by_mouth_openness(runs, lfw_set):
    faces = lfw_set[2]
    res = runs(f"ksame-select:k={K},identities=none")
    thr = get_method("ksame-select").params.mouth_open
    for c in _clusters(res):
        states = {mouth_openness(faces[i].landmarks68) > thr for i in c}
        groups = res.report["ksame"]["groups"]
        assert len(states) == 1 or any(g.startswith("mixed") for g in groups)


# --------------------------------------------------------------------------- repeated people
@pytest.fixture(scope="module")
def repeated(data):
    """4 people × 4 photos and 8 people × 1 photo (identity known from the folder name)."""
    root = data / "lfw" / "images"
    many = ["Colin_Powell", "George_W_Bush", "Hugo_Chavez", "Serena_Williams"]
    single = ["Alvaro_Uribe", "Amelie_Mauresmo", "Ariel_Sharon", "Bill_Clinton", "Gray_Davis", "Harrison_Ford", "Jean_Chretien", "Naomi_Campbell"]
    paths = [p for name in many for p in sorted((root / name).glob("*.jpg"))[:4]]
    paths += [sorted((root / name).glob("*.jpg"))[0] for name in single]
    images = [read_image(p).rgb for p in paths]
    faces = _with_dlib(images, [_largest_face(img) for img in images])
    return paths, images, faces


def _check_per_person(paths, res, k):
    who = np.array([p.parent.name for p in paths])
    clusters = _clusters(res)
    for c in clusters:
        assert len(set(who[c])) >= k, who[c]
    for person in set(who):
        assert sum(person in who[c] for c in clusters) == 1, person


def test_identity_aware_clusters_from_dlib_matches(repeated):
    paths, images, faces = repeated
    res = anonymize_set(images, "ksame-pixel:k=3", faces=[[f] for f in faces])
    assert res.report["ksame"]["people"] <= 12
    _check_per_person(paths, res, 3)


def test_identity_aware_clusters_from_labels(repeated, data):
    paths, images, faces = repeated
    spec = f"ksame-m:k=3,identities=none,labels={data / 'identities.csv'}"
    res = anonymize_set(images, spec, faces=[[f] for f in faces], names=[str(p) for p in paths])
    assert res.report["ksame"]["people"] == 12
    _check_per_person(paths, res, 3)


def test_fewer_than_k_distinct_people_is_refused(repeated):
    paths, images, faces = repeated
    few = slice(0, 8)  # Colin Powell ×4, George W Bush ×4
    with pytest.raises(BadArguments, match="distinct people"):
        anonymize_set(images[few], "ksame-pixel:k=3", faces=[[f] for f in faces[few]])
    res = anonymize_set(images[few], "ksame-pixel:k=3,identities=none", faces=[[f] for f in faces[few]])
    assert len(res.report["ksame"]["clusters"]) == 2  # without identity awareness 8 faces pass as 8 people


# --------------------------------------------------------------------------- command line
def test_cli_anonymize_set_folder_with_a_no_face_image(data, tmp_path, capsys):
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    people = sorted((data / "lfw" / "images").iterdir())[:40:8]
    for person in people:
        shutil.copy(sorted(person.glob("*.jpg"))[0], inp / f"{person.name}.jpg")
    blank = np.full((120, 160, 3), 200, np.uint8)
    cv2.imwrite(str(inp / "sub" / "blank.png"), blank)
    out, report = tmp_path / "out", tmp_path / "report.json"
    rc = main(["anonymize-set", str(inp), "-o", str(out), "--method", "ksame-pixel", "--param", "k=3", "--report", str(report), "-q"])
    assert rc == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.*")) == sorted([f"{p.name}.jpg" for p in people] + ["sub/blank.png"])
    assert "no face found" in capsys.readouterr().err
    rep = json.loads(report.read_text())
    assert rep["no_face"] == [str(inp / "sub" / "blank.png")]
    assert np.array_equal(read_image(out / "sub" / "blank.png").rgb, blank)
    assert main(["anonymize-set", str(inp), "-o", str(tmp_path / "o2"), "--param", "k=9", "-q"]) == 2  # 5 people < k
    assert not (tmp_path / "o2").exists()
