"""Video metrics on frame sequences (book Ch. 3.3.2; Tables 7.1 and 8.4).

Frames are numpy arrays (H, W[, 3]) of one size; faces are given per frame as lists of
:class:`~facedeid.faces.types.Face` (the same face at the same list position in every frame, or
matched by ``track_id`` when every face carries one). No video decoding happens here.

* :func:`identity_per_frame`: identity distance and CSIM between each original frame's faces and the
  same faces in the de-identified frame, for any :class:`~facedeid.identity.recognizers.Recognizer`.
* :func:`temporal_identity_invariance`: mean identity distance between consecutive de-identified
  frames (Balaji et al.: the anonymized identity should stay the same over time).
* :func:`flicker`: mean absolute temporal difference inside the face regions of the de-identified
  frames, relative to that of the originals (1 = no flicker added).
* :func:`average_keypoint_distance`: AKD, mean distance of 68 landmarks detected on original vs
  de-identified frames (motion/expression transfer, Siarohin et al.'s AKD).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..faces.landmarks import landmarks68
from ..faces.types import Box, Face
from ..identity.recognizers import Recognizer, cosine_similarity, distance

Frames = Sequence[np.ndarray]
FaceLists = Sequence[Sequence[Face]]


def _check_lengths(*seqs: Sequence) -> int:
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise ValueError(f"sequences differ in length: {sorted(lengths)}")
    return lengths.pop()


def _pairs(faces_a: Sequence[Face], faces_b: Sequence[Face]) -> list[tuple[int, int]]:
    """Index pairs of the same face in two lists: by ``track_id`` when all faces carry one, else by position."""
    if faces_a and faces_b and all(f.track_id is not None for f in [*faces_a, *faces_b]):
        where = {f.track_id: j for j, f in enumerate(faces_b)}
        return [(i, where[f.track_id]) for i, f in enumerate(faces_a) if f.track_id in where]
    return [(i, i) for i in range(min(len(faces_a), len(faces_b)))]


# ============================================================================ identity
@dataclass(frozen=True)
class FrameIdentity:
    """Per-frame identity figures; frames without a face hold NaN.

    ``distance``: mean recognizer distance (its own metric) between original and de-identified
    faces of each frame; ``csim``: mean cosine similarity of the same embeddings; ``verified``:
    fraction of faces the recognizer still matches (distance ≤ its threshold).
    """

    distance: np.ndarray
    csim: np.ndarray
    verified: np.ndarray

    @property
    def mean_distance(self) -> float:
        return float(np.nanmean(self.distance)) if np.isfinite(self.distance).any() else float("nan")

    @property
    def mean_csim(self) -> float:
        return float(np.nanmean(self.csim)) if np.isfinite(self.csim).any() else float("nan")

    @property
    def verification_rate(self) -> float:
        return float(np.nanmean(self.verified)) if np.isfinite(self.verified).any() else float("nan")


def identity_per_frame(
    original: Frames, anonymized: Frames, faces: FaceLists, recognizer: Recognizer,
    faces_anonymized: FaceLists | None = None,
) -> FrameIdentity:
    """Identity distance and CSIM per frame between original and de-identified faces (Tables 7.1, 8.4).

    ``faces`` are the faces of the original frames; the de-identified faces are taken at the same
    places unless ``faces_anonymized`` (e.g. re-detected) is given.
    """
    n = _check_lengths(original, anonymized, faces)
    faces_b = faces if faces_anonymized is None else faces_anonymized
    _check_lengths(faces, faces_b)
    dist, csim, ver = (np.full(n, np.nan) for _ in range(3))
    for t in range(n):
        pairs = _pairs(faces[t], faces_b[t])
        if not pairs:
            continue
        ea = recognizer.embed(original[t], [faces[t][i] for i, _ in pairs])
        eb = recognizer.embed(anonymized[t], [faces_b[t][j] for _, j in pairs])
        d = distance(ea, eb, recognizer.metric)
        dist[t], csim[t] = float(d.mean()), float(cosine_similarity(ea, eb).mean())
        ver[t] = float(np.mean(d <= recognizer.threshold))
    return FrameIdentity(dist, csim, ver)


def temporal_identity_invariance(frames: Frames, faces: FaceLists, recognizer: Recognizer) -> float:
    """Mean identity distance between the same face in consecutive frames (Balaji et al.).

    Computed on the de-identified frames: small means the substitute identity is stable over time
    (0 for a static sequence). Faces are matched between frames by ``track_id`` or position; NaN
    when no face occurs in two consecutive frames.
    """
    n = _check_lengths(frames, faces)
    emb = [recognizer.embed(frames[t], list(faces[t])) if faces[t] else None for t in range(n)]
    out: list[float] = []
    for t in range(n - 1):
        if emb[t] is None or emb[t + 1] is None:
            continue
        pairs = _pairs(faces[t], faces[t + 1])
        if pairs:
            i, j = zip(*pairs)
            out.extend(distance(emb[t][list(i)], emb[t + 1][list(j)], recognizer.metric).tolist())
    return float(np.mean(out)) if out else float("nan")


# ============================================================================ flicker
def face_region_mask(shape: Sequence[int], boxes: Sequence[Box]) -> np.ndarray:
    """Boolean (H, W) mask of the union of ``boxes`` (clipped to the image)."""
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), dtype=bool)
    for b in boxes:
        x0, y0, x1, y1 = b.clipped(w, h).as_int()
        mask[y0:y1, x0:x1] = True
    return mask


@dataclass(frozen=True)
class Flicker:
    """Temporal change inside the face regions, on the 0–255 scale.

    ``anonymized`` and ``original``: mean over consecutive frame pairs of the mean absolute
    difference ``|F_{t+1} − F_t|`` inside the face region (union of both frames' face boxes, all
    channels); ``ratio`` = anonymized / original (1 when both are 0, inf when only the original is
    still); ``excess`` = anonymized − original.
    """

    anonymized: float
    original: float
    ratio: float
    excess: float
    pairs: int


def _temporal_diffs(frames: Frames, masks: list[np.ndarray]) -> list[float]:
    out = []
    for t in range(len(frames) - 1):
        m = masks[t]
        if not m.any():
            continue
        a = np.asarray(frames[t], dtype=np.float64)
        b = np.asarray(frames[t + 1], dtype=np.float64)
        out.append(float(np.abs(b - a)[m].mean()))
    return out


def flicker(original: Frames, anonymized: Frames, faces: FaceLists) -> Flicker:
    """Flicker of the de-identified face regions relative to the originals (Tables 7.1, 8.4).

    The face region of the pair (t, t+1) is the union of the boxes in ``faces[t]`` and
    ``faces[t+1]`` (the original detections); pairs without a face are skipped. A frame-wise method
    whose output jumps between frames gives a ratio above 1.
    """
    n = _check_lengths(original, anonymized, faces)
    if n < 2:
        raise ValueError("flicker needs at least two frames")
    shape = np.asarray(original[0]).shape
    for seq in (original, anonymized):
        if any(np.asarray(f).shape != shape for f in seq):
            raise ValueError("all frames must have one shape")
    masks = [face_region_mask(shape, [f.box for f in faces[t]] + [f.box for f in faces[t + 1]]) for t in range(n - 1)]
    da, do = _temporal_diffs(anonymized, masks), _temporal_diffs(original, masks)
    if not da:
        nan = float("nan")
        return Flicker(nan, nan, nan, nan, 0)
    fa, fo = float(np.mean(da)), float(np.mean(do))
    if fo > 0:
        ratio = fa / fo
    else:
        ratio = 1.0 if fa == 0 else float("inf")
    return Flicker(fa, fo, ratio, fa - fo, len(da))


# ============================================================================ AKD
def average_keypoint_distance(
    landmarks_original: Sequence[np.ndarray | None], landmarks_anonymized: Sequence[np.ndarray | None]
) -> float:
    """AKD: mean Euclidean distance in pixels between corresponding keypoints, over all frames.

    Each entry is a (k, 2) array of one frame's keypoints (68 landmarks, or several faces
    stacked), or None where none were found; such frames are skipped (NaN when none is left).
    """
    _check_lengths(landmarks_original, landmarks_anonymized)
    dists = []
    for a, b in zip(landmarks_original, landmarks_anonymized):
        if a is None or b is None:
            continue
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"keypoint arrays must be matching (k, 2), got {a.shape} and {b.shape}")
        dists.append(np.linalg.norm(a - b, axis=1))
    return float(np.concatenate(dists).mean()) if dists else float("nan")


def frame_landmarks(frames: Frames, faces: FaceLists) -> list[np.ndarray | None]:
    """dlib's 68 landmarks of every face of every frame, detected in the given boxes, (k·68, 2) per frame.

    Run once on the original and once on the de-identified frames with the *same* boxes (from the
    original detections) so that AKD measures how the facial geometry moved, not the detector.
    """
    n = _check_lengths(frames, faces)
    out: list[np.ndarray | None] = []
    for t in range(n):
        if not faces[t]:
            out.append(None)
            continue
        out.append(np.concatenate([landmarks68(np.asarray(frames[t]), f.box) for f in faces[t]]))
    return out


def akd(original: Frames, anonymized: Frames, faces: FaceLists) -> float:
    """AKD of de-identified frames: :func:`average_keypoint_distance` of :func:`frame_landmarks` on both."""
    _check_lengths(original, anonymized, faces)
    return average_keypoint_distance(frame_landmarks(original, faces), frame_landmarks(anonymized, faces))
