"""Shape-free face texture: the inner face warped onto the model's mean shape on a small canvas.

The texture model works on the *detail layer* of that canvas — the texture minus its own masked
low-pass (a normalised Gaussian of σ = :data:`DETAIL_SIGMA` canvas pixels) — because the
low frequencies are lighting, shading and skin colour, which the renderer keeps from the photo.
What remains (the shape and darkness of brows, eyes, nostrils, lips, creases) is where appearance
carries identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .mesh import piecewise_affine_map, triangle_index

CANVAS = 88
DETAIL_SIGMA = 6.0


@dataclass(frozen=True)
class Canvas:
    """The texture frame: ``points`` (68, 2) are the mean shape on the canvas, ``triangles`` the
    68-point mesh, ``mask`` (size, size) bool the pixels covered by it (eroded by one pixel)."""

    size: int
    points: np.ndarray
    triangles: np.ndarray
    mask: np.ndarray
    sigma: float = DETAIL_SIGMA

    @classmethod
    def create(cls, mean_frontal: np.ndarray, triangles: np.ndarray, size: int = CANVAS, sigma: float = DETAIL_SIGMA) -> "Canvas":
        pts = np.asarray(mean_frontal, dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        scale = (size - 6) / float((hi - lo).max())
        points = (pts - (lo + hi) / 2) * scale + size / 2.0
        return cls.create_from(points, triangles, size, sigma)

    @classmethod
    def create_from(cls, points: np.ndarray, triangles: np.ndarray, size: int = CANVAS, sigma: float = DETAIL_SIGMA) -> "Canvas":
        """The canvas for mean-shape ``points`` already in canvas pixels."""
        points = np.asarray(points, dtype=np.float64)
        labels = triangle_index(points, triangles, (0, 0, size, size))
        mask = cv2.erode((labels > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        return cls(size=size, points=points, triangles=triangles, mask=mask, sigma=float(sigma))

    @property
    def n_pixels(self) -> int:
        return int(self.mask.sum())

    def alpha(self, feather: float = 3.0) -> np.ndarray:
        """A soft version of the mask that reaches 0 at its border (float32, canvas size)."""
        m = cv2.erode(self.mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, int(feather)))
        a = cv2.GaussianBlur(m.astype(np.float32), (0, 0), feather)
        return a * self.mask

    def extract(self, image: np.ndarray, l68: np.ndarray) -> np.ndarray:
        """The face's texture on the canvas (size, size, 3) float32, anti-aliased when the face is larger
        than the canvas; zero outside the mask."""
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[..., :3].astype(np.float32)
        pts = np.asarray(l68, dtype=np.float64)
        ratio = np.ptp(pts, axis=0).max() / np.ptp(self.points, axis=0).max()
        dense = piecewise_affine_map(self.points, pts, self.triangles, (0, 0, self.size, self.size))
        if ratio > 1.5:  # low-pass before sub-sampling
            x0, y0 = np.floor(pts.min(axis=0) - 4 * ratio).astype(int)
            x1, y1 = np.ceil(pts.max(axis=0) + 4 * ratio).astype(int)
            x0, y0 = max(x0, 0), max(y0, 0)
            roi = cv2.GaussianBlur(img[y0:y1, x0:x1], (0, 0), 0.5 * ratio)
            tex = cv2.remap(roi, (dense.map_x - x0).astype(np.float32), (dense.map_y - y0).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            tex = cv2.remap(img, dense.map_x, dense.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return tex * self.mask[..., None]

    def low_pass(self, tex: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Masked (normalised) Gaussian low-pass of a canvas texture (σ = the canvas's ``sigma``)."""
        sigma = self.sigma if sigma is None else sigma
        m = self.mask.astype(np.float32)
        num = cv2.GaussianBlur(tex * m[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(m, (0, 0), sigma)[..., None]
        return num / np.maximum(den, 1e-3) * m[..., None]

    def detail(self, tex: np.ndarray) -> np.ndarray:
        """Detail layer: texture minus its masked low-pass (the identity-bearing appearance)."""
        return (tex - self.low_pass(tex)) * self.mask[..., None]

    def to_vector(self, canvas_image: np.ndarray) -> np.ndarray:
        return np.asarray(canvas_image, dtype=np.float64)[self.mask].ravel()

    def from_vector(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros((self.size, self.size, 3), dtype=np.float32)
        out[self.mask] = np.asarray(v, dtype=np.float32).reshape(-1, 3)
        return out
