"""Image-quality metrics (book Ch. 3.3.2): PSNR, SSIM, MAE."""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, 10·log10(R²/MSE); ``inf`` for identical images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004, Gaussian window σ = 1.5), mean over channels."""
    channel_axis = -1 if a.ndim == 3 else None
    return float(
        structural_similarity(a, b, data_range=255, channel_axis=channel_axis, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    )


def mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error on the 0–255 scale."""
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))
