"""Video metrics on synthetic sequences with known answers, and on real frames (LFW, a real clip)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np
import pytest

from facedeid.faces.detect import detect
from facedeid.faces.types import Box, Face
from facedeid.identity.recognizers import DlibRecognizer
from facedeid.media.images import read_image
from facedeid.metrics.video import (
    akd,
    average_keypoint_distance,
    face_region_mask,
    flicker,
    frame_landmarks,
    identity_per_frame,
    temporal_identity_invariance,
)

BOX = Box(20, 10, 60, 50)  # a 40×40 face region in 80×64 frames


def _face(box: Box = BOX, track_id: int | None = None) -> Face:
    return Face(box=box, score=1.0, landmarks5=np.zeros((5, 2)), track_id=track_id)


def _ramp(n: int, step: float, shape=(64, 80, 3)) -> list[np.ndarray]:
    """Frames whose face region brightens by ``step`` per frame; the background moves more."""
    frames = []
    for t in range(n):
        f = np.full(shape, 40.0 + 30 * (t % 2))  # background flips by 30: must not count
        f[10:50, 20:60] = 100.0 + step * t
        frames.append(f.astype(np.uint8))
    return frames


# ============================================================================ flicker
def test_static_sequence_has_no_flicker():
    frames = [np.full((64, 80, 3), 120, np.uint8)] * 6
    faces = [[_face()]] * 6
    r = flicker(frames, frames, faces)
    assert (r.anonymized, r.original, r.ratio, r.excess, r.pairs) == (0.0, 0.0, 1.0, 0.0, 5)
    moving = _ramp(6, 3.0)
    same = flicker(moving, [f.copy() for f in moving], faces)
    assert same.ratio == 1.0 and same.excess == 0.0 and same.original == pytest.approx(3.0)


def test_flicker_known_alternating_offset():
    """Originals brighten by 2 per frame; the anonymized face adds ±5 alternately:
    differences alternate |2 − 10| = 8 and |2 + 10| = 12, so flicker 10, ratio 5, excess 8."""
    orig = _ramp(5, 2.0)
    anon = []
    for t, f in enumerate(orig):
        g = f.astype(int)
        g[10:50, 20:60] += 5 if t % 2 == 0 else -5
        anon.append(g.astype(np.uint8))
    r = flicker(orig, anon, [[_face()]] * 5)
    assert r.original == pytest.approx(2.0) and r.anonymized == pytest.approx(10.0)
    assert r.ratio == pytest.approx(5.0) and r.excess == pytest.approx(8.0) and r.pairs == 4
    # only the anonymized face changes over time: the ratio is infinite
    still = [np.full((64, 80, 3), 90, np.uint8)] * 3
    assert flicker(still, _ramp(3, 4.0), [[_face()]] * 3).ratio == float("inf")


def test_flicker_region_is_the_union_of_both_frames_boxes_and_skips_faceless_pairs():
    mask = face_region_mask((64, 80), [Box(0, 0, 10, 10), Box(5, 5, 20, 12), Box(70, 60, 95, 90)])
    assert mask.sum() == 100 + (20 - 5) * (12 - 5) - 5 * 5 + 10 * 4
    frames = _ramp(4, 6.0)
    faces = [[_face()], [], [], [_face()]]  # pairs (1, 2) have no face
    r = flicker(frames, frames, faces)
    assert r.pairs == 2 and r.original == pytest.approx(6.0)
    with pytest.raises(ValueError):
        flicker(frames[:1], frames[:1], faces[:1])
    with pytest.raises(ValueError):
        flicker(frames, frames[:3], faces)


# ============================================================================ AKD
def test_average_keypoint_distance_known_shift():
    rng = np.random.default_rng(0)
    pts = [rng.uniform(0, 100, (68, 2)) for _ in range(4)]
    assert average_keypoint_distance(pts, [p + [3.0, 4.0] for p in pts]) == pytest.approx(5.0)
    assert average_keypoint_distance(pts, pts) == 0.0
    # frames with nothing detected are skipped; a half-moved frame counts point by point
    half = pts[1].copy()
    half[:34] += [6.0, 8.0]
    assert average_keypoint_distance([pts[0], None, pts[1]], [pts[0] + [0, 1], pts[2], half]) == pytest.approx((68 * 1 + 34 * 10) / 136)
    assert np.isnan(average_keypoint_distance([None], [pts[0]]))
    with pytest.raises(ValueError):
        average_keypoint_distance([pts[0]], [pts[0][:5]])


def _shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def lfw_face(data: Path) -> tuple[np.ndarray, Face]:
    img = read_image(data / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg").rgb
    return img, detect(img, "hog")[0]


def test_akd_of_real_landmarks_under_known_shifts(lfw_face):
    """Moving the face and its box by whole pixels moves dlib's 68 points exactly; with the original
    boxes kept (as :func:`akd` does), the shift (3, 4) is measured as about 5 px."""
    img, face = lfw_face
    shifts = [(0, 0), (2, -1), (-3, 2), (1, 4)]
    frames = [_shift(img, dx, dy) for dx, dy in shifts]
    faces = [[_face(Box(face.box.x0 + dx, face.box.y0 + dy, face.box.x1 + dx, face.box.y1 + dy))] for dx, dy in shifts]
    l68 = frame_landmarks(frames, faces)
    base = frame_landmarks([img], [[face]])[0]
    for pts, (dx, dy) in zip(l68, shifts):
        assert np.allclose(pts, base + [dx, dy])
    assert akd(frames, frames, faces) == 0.0
    moved = [_shift(f, 3, 4) for f in frames]
    assert akd(frames, moved, faces) == pytest.approx(5.0, abs=1.5)
    moved_boxes = [[_face(Box(f.box.x0 + 3, f.box.y0 + 4, f.box.x1 + 3, f.box.y1 + 4)) for f in fs] for fs in faces]
    assert average_keypoint_distance(l68, frame_landmarks(moved, moved_boxes)) == pytest.approx(5.0)


# ============================================================================ identity
class _MeanColour:
    """A stand-in recognizer: the embedding is the mean RGB colour inside the face box."""

    name: ClassVar[str] = "mean-colour"
    dim: ClassVar[int] = 3
    metric: ClassVar[Literal["euclidean", "cosine"]] = "euclidean"
    threshold: ClassVar[float] = 10.0

    def embed(self, image: np.ndarray, faces) -> np.ndarray:
        rows = []
        for f in faces:
            x0, y0, x1, y1 = f.box.as_int()
            rows.append(image[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
        return np.array(rows, dtype=np.float32).reshape(-1, 3)


def _solid(colour) -> np.ndarray:
    f = np.zeros((64, 80, 3), np.uint8)
    f[10:50, 20:60] = colour
    return f


def test_identity_per_frame_known_embeddings():
    rec = _MeanColour()
    orig = [_solid((100, 100, 100))] * 3
    anon = [_solid((100, 100, 100)), _solid((103, 104, 100)), _solid((130, 100, 140))]
    faces = [[_face()], [_face()], []]
    r = identity_per_frame(orig, anon, faces, rec)
    assert r.distance[:2] == pytest.approx([0.0, 5.0]) and np.isnan(r.distance[2])
    assert r.csim[0] == pytest.approx(1.0)
    assert r.csim[1] == pytest.approx(np.dot([100, 100, 100], [103, 104, 100]) / (np.sqrt(3e4) * np.linalg.norm([103, 104, 100])))
    assert r.verified[:2].tolist() == [1.0, 1.0] and r.mean_distance == pytest.approx(2.5)
    assert r.verification_rate == 1.0
    r2 = identity_per_frame(orig, anon, [[_face()]] * 3, rec)
    assert r2.distance[2] == pytest.approx(50.0) and r2.verified[2] == 0.0


def test_temporal_identity_invariance_known_embeddings():
    rec = _MeanColour()
    static = [_solid((90, 90, 90))] * 4
    assert temporal_identity_invariance(static, [[_face()]] * 4, rec) == 0.0
    # consecutive distances 5, 5, 0 -> mean 10/3
    seq = [_solid((90, 90, 90)), _solid((93, 94, 90)), _solid((90, 90, 90)), _solid((90, 90, 90))]
    assert temporal_identity_invariance(seq, [[_face()]] * 4, rec) == pytest.approx(10 / 3)
    # two faces matched by track id although their order swaps between frames
    left, right = Box(0, 0, 20, 20), Box(40, 0, 60, 20)
    a = np.zeros((64, 80, 3), np.uint8)
    a[0:20, 0:20], a[0:20, 40:60] = 50, 200
    b = a.copy()
    b[0:20, 40:60] = 206  # the right face changes by 6 per channel: distance 6·√3
    faces = [[_face(left, 1), _face(right, 2)], [_face(right, 2), _face(left, 1)]]
    assert temporal_identity_invariance([a, b], faces, rec) == pytest.approx(6 * np.sqrt(3) / 2)
    assert np.isnan(temporal_identity_invariance([a, b], [[], [_face(left)]], rec))


def test_identity_metrics_with_dlib_on_real_faces(data: Path, lfw_face):
    img, face = lfw_face
    other = read_image(data / "lfw" / "images" / "Serena_Williams" / "Serena_Williams_0001.jpg").rgb
    other_face = detect(other, "hog")[0]
    rec = DlibRecognizer()
    same = identity_per_frame([img, img], [img, img.copy()], [[face], [face]], rec)
    assert same.distance == pytest.approx([0.0, 0.0], abs=1e-6) and same.csim == pytest.approx([1.0, 1.0])
    swapped = identity_per_frame([img], [other], [[face]], rec, faces_anonymized=[[other_face]])
    assert swapped.distance[0] > rec.threshold and swapped.verified[0] == 0.0
    known = float(np.linalg.norm(rec.embed(img, [face])[0] - rec.embed(other, [other_face])[0]))
    # a sequence alternating between two people: every step is that distance
    seq = [img, other, img]
    faces = [[face], [other_face], [face]]
    assert temporal_identity_invariance(seq, faces, rec) == pytest.approx(known, rel=1e-5)


# ============================================================================ a real clip
@pytest.fixture(scope="module")
def clip(data: Path) -> tuple[list[np.ndarray], list[list[Face]]]:
    cap = cv2.VideoCapture(str(data / "videos" / "lp_driving_d19.mp4"))
    frames = []
    while len(frames) < 8:
        ok, bgr = cap.read()
        assert ok, "cannot decode the clip"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    faces = [detect(f, "centerface")[:1] for f in frames]
    assert all(len(f) == 1 for f in faces)
    return frames, faces


def test_video_metrics_on_a_real_clip(clip):
    frames, faces = clip
    rec = DlibRecognizer()
    assert flicker(frames, frames, faces).ratio == 1.0
    # a frame-wise random pixel noise flickers far more than the talking head itself
    rng = np.random.default_rng(0)
    noisy = [np.clip(f.astype(int) + rng.normal(0, 20, f.shape), 0, 255).astype(np.uint8) for f in frames]
    r = flicker(frames, noisy, faces)
    assert r.ratio > 2.0 and r.excess > 5.0
    # a steady blur keeps (even lowers) the temporal change
    blurred = [cv2.GaussianBlur(f, (0, 0), 6) for f in frames]
    assert flicker(frames, blurred, faces).ratio < 1.0
    # the same person over 8 consecutive frames: far below dlib's threshold
    assert temporal_identity_invariance(frames, faces, rec) < 0.25
    assert akd(frames, frames, faces) == 0.0
