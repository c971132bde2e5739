"""Face tracking for video: detection every N frames, optical flow in between, association,
smoothing, and fail-safe holding of lost tracks.

A missed face is a leak, so a track that loses its detection is *held* for ``hold`` frames with its
box widened a little more each frame, and those frames are reported as uncertain. Smoothing never
shrinks coverage: the box used is the union of the smoothed box and the raw measurement.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from .detect import DEFAULT_DETECTOR, detect
from .types import Box, Face


@dataclass
class Track:
    id: int
    box: Box
    landmarks5: np.ndarray
    score: float
    detector: str
    secret: int = field(default_factory=lambda: int.from_bytes(os.urandom(16), "little"))  # per-track noise seed
    lost: int = 0
    age: int = 0

    def face(self) -> Face:
        return Face(self.box, self.score, self.landmarks5.copy(), detector=self.detector, track_id=self.id)


@dataclass
class FrameFaces:
    index: int
    faces: list[Face]
    uncertain: bool
    held: list[int]  # tracks kept alive without a detection
    detected: bool  # a detector ran on this frame


def _union(a: Box, b: Box) -> Box:
    return Box(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1))


def _blend(old: Box, new: Box, alpha: float) -> Box:
    """Exponential smoothing of the box (alpha = weight of the new measurement)."""
    return Box(*(alpha * n + (1 - alpha) * o for o, n in zip((old.x0, old.y0, old.x1, old.y1), (new.x0, new.y0, new.x1, new.y1))))


def match_boxes(track_boxes: list[Box], face_boxes: list[Box], iou: float) -> set[tuple[int, int]]:
    """Optimal one-to-one matching of detections to tracks (Hungarian on 1 − IoU with each track box
    grown by 20 %); pairs with IoU ≤ ``iou`` are left unmatched."""
    cost = np.ones((len(track_boxes), len(face_boxes)))
    for i, tb in enumerate(track_boxes):
        for j, fb in enumerate(face_boxes):
            cost[i, j] = 1.0 - tb.expanded(0.2).iou(fb)
    rows, cols = linear_sum_assignment(cost) if cost.size else ([], [])
    return {(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < 1.0 - iou}


class Tracker:
    """Tracks faces across frames; call :meth:`update` once per frame in order."""

    def __init__(self, detector: str = DEFAULT_DETECTOR, detect_every: int = 1, hold: int = 8, iou: float = 0.2,
                 smooth: float = 0.6, grow: float = 0.06) -> None:
        self.detector, self.detect_every, self.hold = detector, max(1, detect_every), hold
        self.iou, self.smooth, self.grow = iou, smooth, grow
        self.tracks: list[Track] = []
        self._next = 0
        self._prev_gray: np.ndarray | None = None

    def update(self, index: int, rgb: np.ndarray) -> FrameFaces:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        run_detector = index % self.detect_every == 0 or any(t.lost for t in self.tracks)
        if self._prev_gray is not None and self.tracks:
            self._flow(gray)
        held: list[int] = []
        if run_detector:
            held = self._associate(detect(rgb, self.detector), rgb.shape)
        self._prev_gray = gray
        uncertain = bool(held) or any(t.lost for t in self.tracks)
        return FrameFaces(index, [t.face() for t in self.tracks], uncertain, held, run_detector)

    def _flow(self, gray: np.ndarray) -> None:
        """Move every track's landmarks and box by the median Lucas–Kanade flow of its landmarks."""
        for t in self.tracks:
            pts = t.landmarks5.astype(np.float32).reshape(-1, 1, 2)
            new, ok, _ = cv2.calcOpticalFlowPyrLK(self._prev_gray, gray, pts, None, winSize=(21, 21), maxLevel=3)
            ok = ok.ravel().astype(bool)
            if ok.sum() >= 3:
                shift = np.median((new.reshape(-1, 2) - pts.reshape(-1, 2))[ok], axis=0)
                t.landmarks5 = t.landmarks5 + shift
                t.box = Box(t.box.x0 + shift[0], t.box.y0 + shift[1], t.box.x1 + shift[0], t.box.y1 + shift[1])

    def _associate(self, faces: list[Face], shape: tuple[int, ...]) -> list[int]:
        """Match detections to tracks (Hungarian on 1 − IoU); start, update, hold or drop tracks."""
        h, w = shape[:2]
        matched = match_boxes([t.box for t in self.tracks], [f.box for f in faces], self.iou)
        used_t, used_f = {i for i, _ in matched}, {j for _, j in matched}
        for i, j in matched:
            t, f = self.tracks[i], faces[j]
            t.box = _union(_blend(t.box, f.box, self.smooth), f.box).clipped(w, h)
            t.landmarks5 = self.smooth * f.landmarks5 + (1 - self.smooth) * t.landmarks5
            t.score, t.detector, t.lost, t.age = f.score, f.detector, 0, t.age + 1
        held = []
        for i, t in enumerate(self.tracks):
            if i not in used_t:
                t.lost += 1
                t.box = t.box.expanded(self.grow / 2).clipped(w, h)
                held.append(t.id)
        self.tracks = [t for t in self.tracks if t.lost <= self.hold]
        for j, f in enumerate(faces):
            if j not in used_f:
                self.tracks.append(Track(self._next, f.box, f.landmarks5.copy(), f.score, f.detector))
                self._next += 1
        return [i for i in held if any(t.id == i for t in self.tracks)]
