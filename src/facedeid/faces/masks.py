"""Face regions: the area a method replaces, and a feathered alpha that blends it back.

The region itself (``core``) is replaced completely; the feather band lies *outside* it, so no
original pixel of the region survives. Everything is computed inside a region of interest (ROI)
so that work is proportional to the face, not to the photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .types import Box, Face

REGIONS = ("ellipse", "box", "hull")


@dataclass(frozen=True)
class FaceRegion:
    """A face's region inside its ROI ``(x0, y0, x1, y1)`` of the image.

    ``core`` (bool) is the region that is fully replaced; ``alpha`` (float32, 0..1) is 1 on the core
    and falls to 0 across the feather band outside it; ``core_box`` is the core's bounding box in
    ROI coordinates.
    """

    roi: tuple[int, int, int, int]
    core: np.ndarray
    alpha: np.ndarray
    core_box: Box

    @property
    def slices(self) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.roi
        return slice(y0, y1), slice(x0, x1)


def _ellipse_params(box: Box, margin: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Ellipse covering the face and forehead: centred a little above the box centre."""
    cx, cy = box.center
    a = box.width / 2 * (1 + 2 * margin) * 1.1
    b = box.height / 2 * (1 + 2 * margin) * 1.25
    return (cx, cy - 0.1 * box.height), (a, b)


def _hull_points(face: Face, margin: float) -> np.ndarray:
    """Convex-hull polygon of the 68 landmarks, extended over the forehead, grown by ``margin``."""
    pts = face.landmarks68
    if pts is None:
        raise ValueError("the hull region needs 68 landmarks")
    brows = pts[17:27]
    up = brows.mean(axis=0) - pts[8]
    up = up / max(np.linalg.norm(up), 1e-6)
    forehead = brows + up * 0.45 * face.box.height
    hull = cv2.convexHull(np.concatenate([pts, forehead]).astype(np.float32)).reshape(-1, 2)
    centre = hull.mean(axis=0)
    return centre + (hull - centre) * (1 + 2 * margin)


def _outline(face: Face, region: str, margin: float) -> np.ndarray:
    """Polygon (N, 2) of the region in image coordinates."""
    if region == "box":
        b = face.box.expanded(margin)
        return np.array([[b.x0, b.y0], [b.x1, b.y0], [b.x1, b.y1], [b.x0, b.y1]], dtype=np.float64)
    if region == "ellipse":
        (cx, cy), (a, b) = _ellipse_params(face.box, margin)
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], axis=1)
    if region == "hull":
        return _hull_points(face, margin)
    raise ValueError(f"unknown region {region!r} (known: {', '.join(REGIONS)})")


def face_region(face: Face, image_shape: tuple[int, ...], region: str = "ellipse", margin: float = 0.1, feather: float = 0.08) -> FaceRegion:
    """Build the :class:`FaceRegion` of ``face``.

    ``margin`` grows the region by that fraction of the face size on each side; ``feather`` is the
    width of the soft band outside the region as a fraction of the face's larger side.
    """
    h, w = image_shape[:2]
    poly = _outline(face, region, margin)
    feather_px = max(1.0, feather * max(face.box.width, face.box.height))
    pad = int(np.ceil(feather_px)) + 2
    x0 = max(0, int(np.floor(poly[:, 0].min())) - pad)
    y0 = max(0, int(np.floor(poly[:, 1].min())) - pad)
    x1 = min(w, int(np.ceil(poly[:, 0].max())) + pad + 1)
    y1 = min(h, int(np.ceil(poly[:, 1].max())) + pad + 1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("face region lies outside the image")
    core = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    shift = 4  # sub-pixel polygon precision
    cv2.fillPoly(core, [np.round((poly - [x0, y0]) * (1 << shift)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=shift)
    dist = cv2.distanceTransform((1 - core).astype(np.uint8), cv2.DIST_L2, 5)
    alpha = np.clip(1.0 - dist / feather_px, 0.0, 1.0).astype(np.float32)
    ys, xs = np.nonzero(core)
    core_box = Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)) if xs.size else Box(0, 0, 1, 1)
    return FaceRegion(roi=(x0, y0, x1, y1), core=core.astype(bool), alpha=alpha, core_box=core_box)


def composite(image: np.ndarray, replacement: np.ndarray, region: FaceRegion) -> None:
    """Blend ``replacement`` (ROI-sized) into ``image`` in place with the region's alpha."""
    sl = region.slices
    a = region.alpha[..., None] if image.ndim == 3 else region.alpha
    roi = image[sl].astype(np.float32)
    out = roi + (replacement.astype(np.float32) - roi) * a
    image[sl] = np.clip(np.rint(out), 0, 255).astype(image.dtype)
