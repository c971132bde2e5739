"""Facial landmarks: dlib's 5- and 68-point shape predictors run inside a face box."""
from __future__ import annotations

import functools
import threading

import dlib
import numpy as np

from ..models import dlib_model_path
from .types import Box, Face

_LOCK = threading.Lock()


@functools.cache
def _predictor(kind: str) -> "dlib.shape_predictor":
    return dlib.shape_predictor(str(dlib_model_path(kind)))


def dlib_rect(box: Box) -> "dlib.rectangle":
    """dlib rectangle of a box (dlib's right/bottom are inclusive, ours exclusive)."""
    x0, y0, x1, y1 = (int(round(v)) for v in (box.x0, box.y0, box.x1, box.y1))
    return dlib.rectangle(x0, y0, x1 - 1, y1 - 1)


def _shape(image: np.ndarray, box: Box, kind: str) -> np.ndarray:
    if image.ndim == 2:
        image = np.ascontiguousarray(np.stack([image] * 3, axis=-1))
    shape = _predictor(kind)(np.ascontiguousarray(image), dlib_rect(box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def landmarks5(image: np.ndarray, box: Box) -> np.ndarray:
    """dlib's five points (eye corners, point under the nose) for a face box; (5, 2) float."""
    return _shape(image, box, "shape5")


def landmarks68(image: np.ndarray, box: Box) -> np.ndarray:
    """iBUG-300W 68 points for a face box; (68, 2) float."""
    return _shape(image, box, "shape68")


def with_landmarks68(image: np.ndarray, face: Face) -> Face:
    """Return ``face`` with its 68 points filled in (computed once)."""
    if face.landmarks68 is not None:
        return face
    return face.with_landmarks68(landmarks68(image, face.box))


def arcface_points(face: Face, image: np.ndarray | None = None) -> np.ndarray:
    """The ArcFace 5-point layout (left eye, right eye, nose tip, left and right mouth corner), (5, 2).

    Taken from the 68 points (computed from ``image`` when the face lacks them).
    """
    pts = face.landmarks68
    if pts is None:
        if image is None:
            raise ValueError("68 landmarks needed: pass the image")
        pts = landmarks68(image, face.box)
    return np.array(
        [pts[36:42].mean(axis=0), pts[42:48].mean(axis=0), pts[30], pts[48], pts[54]], dtype=np.float64
    )
