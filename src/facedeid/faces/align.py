"""Alignment: a similarity transform (Umeyama) from landmarks to a canonical template, and back."""
from __future__ import annotations

import cv2
import numpy as np

from .types import Face

# Canonical positions of the eye centres and the point under the nose for a square crop of side 1,
# derived from dlib's 5-point layout (eye-corner pairs averaged): used by aligned-crop methods.
TEMPLATE_5 = np.array([[0.3150, 0.3846], [0.6850, 0.3846], [0.5000, 0.6600]], dtype=np.float64)


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991).

    Returns the (d+1)×(d+1) homogeneous matrix T with ``dst ≈ s·R·src + t`` (R a proper rotation,
    never a reflection; s = 1 without ``estimate_scale``); the book's Eq. 8.13–8.14.
    Raises ``ValueError`` for mismatched shapes or coincident source points.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"need two (n>=2, d) arrays of the same shape, got {src.shape} and {dst.shape}")
    n, dim = src.shape
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    if (sc**2).sum() / n <= 1e-12:
        raise ValueError("degenerate source points: they all coincide")
    cov = dc.T @ sc / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(dim)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var_s = (sc**2).sum() / n
    scale = (s * d).sum() / var_s if estimate_scale and var_s > 0 else 1.0
    t = np.eye(dim + 1)
    t[:dim, :dim] = scale * rot
    t[:dim, dim] = mu_d - scale * rot @ mu_s
    return t


def key_points(face: Face) -> np.ndarray:
    """Eye centres (image-left first) and the point under the nose, (3, 2)."""
    left, right = face.eye_centers
    return np.stack([left, right, face.landmarks5[4]])


def align_matrix(face: Face, size: int) -> np.ndarray:
    """3×3 transform from image pixels to an aligned ``size``×``size`` crop."""
    return umeyama(key_points(face), TEMPLATE_5 * size)


def warp_to_crop(image: np.ndarray, face: Face, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crop of ``face`` and the 3×3 matrix that produced it."""
    m = align_matrix(face, size)
    crop = cv2.warpAffine(image, m[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return crop, m


def warp_from_crop(crop: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Map an aligned crop back into image coordinates (inverse of :func:`warp_to_crop`)."""
    h, w = shape[:2]
    inv = np.linalg.inv(matrix)
    return cv2.warpAffine(crop, inv[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def transform_points(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3×3 homogeneous transform to (N, 2) points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def crop_to_roi(crop: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """The aligned ``crop`` warped back onto the image ROI ``(x0, y0, x1, y1)`` (paste-back input)."""
    x0, y0, x1, y1 = roi
    inv = np.linalg.inv(matrix)
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)
    m = (shift @ inv)[:2]
    return cv2.warpAffine(crop, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
