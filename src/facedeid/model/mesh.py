"""Triangle meshes over the 68 landmarks: dense piecewise-affine maps between two point sets.

Every warp of the parametric model goes through :func:`piecewise_affine_map`: for each pixel of a
region inside a *destination* mesh it gives the position in the *source* mesh (barycentric
coordinates are kept from one triangle to its partner), which ``cv2.remap`` then samples with
bilinear interpolation (anti-aliasing for down-scaling is the caller's business). The triangulation
is fixed once, on the model's mean shape, so that source and destination share their topology;
:func:`fold_overs` says whether a destination mesh turned a triangle over.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (t, 3) of the (n, 2) ``points``, consistently oriented (positive area)."""
    tri = Delaunay(np.asarray(points, dtype=np.float64)).simplices.astype(np.int32)
    area = signed_areas(points, tri)
    tri[area < 0] = tri[area < 0][:, [0, 2, 1]]
    return tri


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle (positive = the orientation of the reference mesh)."""
    p = np.asarray(points, dtype=np.float64)[triangles]
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def fold_overs(points: np.ndarray, triangles: np.ndarray, min_fraction: float = 0.05, reference: np.ndarray | None = None) -> int:
    """Number of triangles that are flipped or squashed below ``min_fraction`` of their area in
    ``reference`` (or of the mean area when no reference is given)."""
    area = signed_areas(points, triangles)
    ref = np.abs(signed_areas(reference, triangles)) if reference is not None else np.full(len(area), np.abs(area).mean())
    return int(np.count_nonzero(area < min_fraction * ref))


def _affines(dst: np.ndarray, src: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(t, 2, 3) affine maps taking each destination triangle onto its source triangle."""
    d = np.asarray(dst, dtype=np.float64)[triangles]  # (t, 3, 2)
    s = np.asarray(src, dtype=np.float64)[triangles]
    ones = np.ones((len(triangles), 3, 1))
    dh = np.concatenate([d, ones], axis=2)  # (t, 3, 3): rows [x y 1]
    # s = dh @ M^T  ->  M^T = solve(dh, s)
    det = np.linalg.det(dh)
    dh[np.abs(det) < 1e-9] += np.eye(3) * 1e-6  # degenerate triangles: harmless tiny offset
    mt = np.linalg.solve(dh, s)  # (t, 3, 2)
    return np.transpose(mt, (0, 2, 1))


@dataclass(frozen=True)
class DenseMap:
    """Source coordinates for the pixels of ``roi`` = (x0, y0, x1, y1); ``inside`` marks the pixels
    covered by the destination mesh (elsewhere the map is the identity)."""

    roi: tuple[int, int, int, int]
    map_x: np.ndarray
    map_y: np.ndarray
    inside: np.ndarray


def triangle_index(dst: np.ndarray, triangles: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Label image of ``roi``: 1 + the index of the destination triangle covering each pixel, 0 outside.
    Rasterised with 4 bits of sub-pixel precision."""
    x0, y0, x1, y1 = roi
    labels = np.zeros((y1 - y0, x1 - x0), dtype=np.int32)
    pts = np.round((np.asarray(dst, dtype=np.float64) - (x0, y0)) * 16).astype(np.int32)
    for i, tri in enumerate(triangles):
        cv2.fillConvexPoly(labels, pts[tri], i + 1, lineType=cv2.LINE_8, shift=4)
    return labels


def piecewise_affine_map(dst: np.ndarray, src: np.ndarray, triangles: np.ndarray, roi: tuple[int, int, int, int]) -> DenseMap:
    """For every pixel of ``roi`` inside the ``dst`` mesh: where it lies in the ``src`` mesh.

    Piecewise affine (one affine map per triangle, continuous across shared edges); pixels outside
    the mesh map to themselves.
    """
    x0, y0, x1, y1 = roi
    labels = triangle_index(dst, triangles, roi)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    map_x, map_y = xs.copy(), ys.copy()
    inside = labels > 0
    if inside.any():
        m = _affines(dst, src, triangles).astype(np.float32)[labels[inside] - 1]  # (n, 2, 3)
        px, py = xs[inside], ys[inside]
        map_x[inside] = m[:, 0, 0] * px + m[:, 0, 1] * py + m[:, 0, 2]
        map_y[inside] = m[:, 1, 0] * px + m[:, 1, 1] * py + m[:, 1, 2]
    return DenseMap(roi=(x0, y0, x1, y1), map_x=map_x, map_y=map_y, inside=inside)


def clip_roi(roi: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``roi`` rounded outwards and clipped to an image of ``shape``."""
    h, w = shape[:2]
    x0, y0, x1, y1 = roi
    return max(0, int(np.floor(x0))), max(0, int(np.floor(y0))), min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)
