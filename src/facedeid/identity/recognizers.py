"""Face recognizers behind one interface: embeddings, distances and a verification threshold."""
from __future__ import annotations

import functools
from typing import ClassVar, Literal, Protocol, Sequence

import dlib
import numpy as np

from ..faces.landmarks import dlib_rect
from ..faces.types import Face
from ..models import dlib_model_path


class Recognizer(Protocol):
    """A face recognizer. ``embed`` returns one row per face (float32)."""

    name: str
    dim: int
    metric: Literal["euclidean", "cosine"]
    threshold: float

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray: ...


def distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Row-wise distance: Euclidean, or cosine distance 1 − cos for ``cosine``."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    na = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    nb = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return 1.0 - np.sum(na * nb, axis=1)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (CSIM)."""
    return 1.0 - distance(a, b, "cosine")


@functools.cache
def _dlib_net() -> "dlib.face_recognition_model_v1":
    return dlib.face_recognition_model_v1(str(dlib_model_path("resnet")))


class DlibRecognizer:
    """dlib's 128-D ResNet (the book's "Face Recognition library"); Euclidean threshold 0.6."""

    name: ClassVar[str] = "dlib"
    dim: ClassVar[int] = 128
    metric: ClassVar[Literal["euclidean", "cosine"]] = "euclidean"
    threshold: ClassVar[float] = 0.6

    def __init__(self, jitter: int = 0) -> None:
        self.jitter = jitter

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.dim), dtype=np.float32)
        img = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
        img = np.ascontiguousarray(img[..., :3])
        shapes = dlib.full_object_detections()
        for f in faces:
            pts = [dlib.point(int(round(x)), int(round(y))) for x, y in f.landmarks5]
            shapes.append(dlib.full_object_detection(dlib_rect(f.box), pts))
        desc = _dlib_net().compute_face_descriptor(img, shapes, self.jitter)
        return np.array([np.array(d) for d in desc], dtype=np.float32)
