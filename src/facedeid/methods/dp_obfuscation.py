"""Differentially private obfuscation (book Ch. 3.1.1 and 5.2.3; Fan 2018, 2019).

Neighbourhood (all three methods): two images are neighbours when they differ in at most ``m``
pixels *of the face region* (any channels, any values in 0..255). Pixels outside the region are
published unchanged and are not covered. Colour images are handled as C = 3 values per pixel, so
the sensitivities below carry a factor C (L1) or √C (L2) that Fan's grayscale analysis does not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..faces.masks import FaceRegion
from ..faces.types import Face
from ..privacy.mechanisms import gaussian_mechanism, laplace_mechanism, metric_laplace
from ..privacy.randomness import PrivacyRandom
from .base import Context, RegionMethod, RegionParams, register
from .cells import CellGrid


def _per_count(grid: CellGrid, means: np.ndarray, noisy) -> np.ndarray:
    """Apply ``noisy(values, n_pixels)`` to each group of cells that hold the same pixel count."""
    out = means.copy()
    for n in np.unique(grid.counts[grid.counts > 0]):
        idx = np.nonzero(grid.counts == n)[0]
        out[idx] = noisy(means[idx], int(n))
    return out


def dp_pix_cells(roi: np.ndarray, grid: CellGrid, m: int, epsilon: float, rng: PrivacyRandom) -> np.ndarray:
    """DP-Pix (Fan 2018): Laplace noise on every cell mean, scale C·255·m/(n·ε) for a cell of n pixels.

    For full b×b cells this is the book's 255·m/(b²·ε) (times C for colour). Changing m pixels moves
    the cell means by at most Σ_c C·255·m_c/n_c in L1, so per-cell scales ∝ 1/n_c give ε-DP overall.
    """
    c = roi.shape[2] if roi.ndim == 3 else 1
    means = grid.means(roi)
    noisy = _per_count(grid, means, lambda v, n: laplace_mechanism(v, c * 255.0 * m / n, epsilon, rng))
    return np.clip(noisy, 0, 255)


@register
class DPPix(RegionMethod):
    name: ClassVar[str] = "dp-pix"
    reference: ClassVar[str] = "Ch. 3.1.1, 5.2.3 (DP-Pix, Fan 2018): Lap(255·m/(b²·ε)) on b×b cell means"
    summary: ClassVar[str] = "ε-differentially private pixelation (m-neighbourhood) with cells of b pixels"

    @dataclass(frozen=True)
    class Params(RegionParams):
        b: int = 16
        m: int = 16
        epsilon: float = 0.5

        def validate(self) -> None:
            if self.b < 1 or self.m < 1 or self.epsilon <= 0:
                raise ValueError("need b ≥ 1, m ≥ 1, epsilon > 0")

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        p = self.params
        grid = CellGrid.build(roi.shape[:2], (0.0, 0.0), p.b, p.b)
        noisy = dp_pix_cells(roi, grid, p.m, p.epsilon, ctx.rng)
        return grid.paint(noisy, roi.shape[2] if roi.ndim == 3 else 1)


@register
class DPBlur(RegionMethod):
    name: ClassVar[str] = "dp-blur"
    reference: ClassVar[str] = "Ch. 3.1.1 (DP-Blur, Fan 2019): pixelate, Gaussian DP noise, up-sample, Gaussian blur"
    summary: ClassVar[str] = "(ε, δ)-differentially private blur: noisy b×b cell means, then Gaussian blur"

    @dataclass(frozen=True)
    class Params(RegionParams):
        b: int = 16
        m: int = 16
        epsilon: float = 1.0
        delta: float = 1e-5
        blur: float = 8.0  # standard deviation (pixels) of the final Gaussian blur

        def validate(self) -> None:
            if self.b < 1 or self.m < 1 or self.epsilon <= 0 or not 0 < self.delta < 1 or self.blur < 0:
                raise ValueError("need b ≥ 1, m ≥ 1, epsilon > 0, 0 < delta < 1, blur ≥ 0")

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        """Gaussian mechanism per cell: σ_n for L2 sensitivity √C·255·m/n (cells of n pixels).

        With σ_n ∝ 1/n the zCDP cost is Σ_c C·255²·m_c²/(2τ²) ≤ C·255²·m²/(2τ²), so the release is
        (ε, δ)-DP by the zCDP conversion in :func:`facedeid.privacy.mechanisms.gaussian_sigma`.
        """
        p = self.params
        c = roi.shape[2] if roi.ndim == 3 else 1
        grid = CellGrid.build(roi.shape[:2], (0.0, 0.0), p.b, p.b)
        means = grid.means(roi)
        noisy = _per_count(grid, means, lambda v, n: gaussian_mechanism(v, np.sqrt(c) * 255.0 * p.m / n, p.epsilon, p.delta, ctx.rng))
        img = grid.paint(np.clip(noisy, 0, 255), c).astype(np.float32)
        if p.blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=p.blur, sigmaY=p.blur, borderType=cv2.BORDER_REFLECT)
        return img


def dp_svd_channel(channel: np.ndarray, k: int, epsilon: float, rng: PrivacyRandom) -> np.ndarray:
    """DP-SVD (Fan 2019) on one channel: keep the top-k singular values, perturbed with ε·d₂ metric
    privacy (noise density ∝ exp(−ε‖z‖₂)), and rebuild A' = U_k diag(σ') V_kᵀ."""
    u, s, vt = np.linalg.svd(channel.astype(np.float64), full_matrices=False)
    k = min(k, s.size)
    noisy = np.maximum(metric_laplace(s[:k], epsilon, rng), 0.0)
    return (u[:, :k] * noisy) @ vt[:k]


@register
class DPSVD(RegionMethod):
    name: ClassVar[str] = "dp-svd"
    reference: ClassVar[str] = "Ch. 3.1.1 (DP-SVD, Fan 2019): metric-private sampling of singular values"
    summary: ClassVar[str] = "rank-k reconstruction of the face with ε-metric-private singular values"

    @dataclass(frozen=True)
    class Params(RegionParams):
        k: int = 8
        epsilon: float = 0.05  # total over channels; each channel gets epsilon / C

        def validate(self) -> None:
            if self.k < 1 or self.epsilon <= 0:
                raise ValueError("need k ≥ 1 and epsilon > 0")

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        p = self.params
        chans = [roi] if roi.ndim == 2 else [roi[..., i] for i in range(roi.shape[2])]
        eps = p.epsilon / len(chans)
        out = [dp_svd_channel(ch, p.k, eps, ctx.rng) for ch in chans]
        return np.clip(out[0] if roi.ndim == 2 else np.stack(out, axis=-1), 0, 255)
