"""Face shape in a pose-free frame: the 68 landmarks lifted onto a mean 3D face and seen frontally.

Each face's head rotation R comes from ``cv2.solvePnP`` on the 68 points and the generic 3D face
(:data:`facedeid.metrics.utility.FACE_3D_68`, the one the pose metric uses). Under weak
perspective the landmarks are p ≈ s·(R X)₁₂ + t; the part the template does not explain,
r = p − s·(R X)₁₂ − t, is carried back into the template's frontal x–y plane by (s·R₂₂)⁻¹. The
*frontal shape* X₁₂ + (s·R₂₂)⁻¹ r is what the shape model learns (identity is modelled frontally),
and an identity displacement Δ of the frontal shape reaches the photo as s·R₂₂·Δ — re-projected with
the face's own pose, so pose stays the photo's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics.utility import FACE_3D_68, head_rotation

#: Largest amplification of an image-plane residual into the frontal plane (profile faces).
MAX_GAIN = 2.0


@dataclass(frozen=True)
class Pose:
    """Weak-perspective pose of a face: rotation (3, 3), scale (pixels per template unit), shift (2,)."""

    rotation: np.ndarray
    scale: float
    shift: np.ndarray

    @property
    def linear(self) -> np.ndarray:
        """s·R₂₂: how a frontal-plane displacement appears in the image."""
        return self.scale * self.rotation[:2, :2]

    def template(self) -> np.ndarray:
        """The mean 3D face under this pose, (68, 2) pixels."""
        return self.scale * (FACE_3D_68 @ self.rotation.T)[:, :2] + self.shift

    def to_image(self, delta_frontal: np.ndarray) -> np.ndarray:
        """Image-plane displacement (n, 2) of a frontal-plane displacement (n, 2)."""
        return np.asarray(delta_frontal, dtype=np.float64) @ self.linear.T

    def to_frontal(self, delta_image: np.ndarray) -> np.ndarray:
        """Frontal-plane displacement of an image displacement, the inverse of :meth:`to_image`
        with its singular values floored (gain ≤ :data:`MAX_GAIN`/s) for near-profile faces."""
        u, s, vt = np.linalg.svd(self.linear)
        s = np.maximum(s, self.scale / MAX_GAIN)
        inv = vt.T @ np.diag(1.0 / s) @ u.T
        return np.asarray(delta_image, dtype=np.float64) @ inv.T


def fit_pose(l68: np.ndarray, image_shape: tuple[int, ...]) -> Pose:
    """Weak-perspective pose: R from solvePnP, then s and t by least squares on the projected template."""
    p = np.asarray(l68, dtype=np.float64)
    rot = head_rotation(p, image_shape)
    q = (FACE_3D_68 @ rot.T)[:, :2]
    qc, pc = q - q.mean(axis=0), p - p.mean(axis=0)
    scale = float((qc * pc).sum() / max((qc**2).sum(), 1e-9))
    shift = p.mean(axis=0) - scale * q.mean(axis=0)
    return Pose(rotation=rot, scale=max(scale, 1e-6), shift=shift)


def frontal_shape(l68: np.ndarray, pose: Pose) -> np.ndarray:
    """The face's landmarks in the frontal template frame, (68, 2) template units."""
    residual = np.asarray(l68, dtype=np.float64) - pose.template()
    return FACE_3D_68[:, :2] + pose.to_frontal(residual)
