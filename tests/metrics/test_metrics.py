import numpy as np
import pytest

from facedeid.metrics.privacy import sdr, verification
from facedeid.metrics.quality import mae, psnr, ssim


def test_sdr_counts_pairs_beyond_threshold():
    assert sdr(np.array([0.1, 0.7, 0.9, 0.5]), 0.6) == 0.5
    assert sdr(np.array([0.6]), 0.6) == 0.0  # at τ the recognizer still verifies


def test_verification_on_known_distances():
    same = np.array([0.1, 0.2, 0.3, 0.7])
    diff = np.linspace(0.5, 1.5, 1000)
    v = verification(same, diff, 0.6)
    assert v.tar == 0.75
    assert v.far == pytest.approx(np.mean(diff <= 0.6))
    assert v.tar_at_far_1 == 0.75 and v.tar_at_far_01 == 0.75
    perfect = verification(np.array([0.1, 0.2]), np.array([0.8, 0.9]), 0.6)
    assert perfect.eer == 0.0 and perfect.tar == 1.0 and perfect.far == 0.0


def test_quality_metrics_known_answers():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0) and mae(a, a) == 0.0
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / mse))
    assert mae(a, b) == pytest.approx(np.mean(np.abs(a.astype(float) - b)))
    shifted = np.roll(a, 3, axis=1)
    assert ssim(a, shifted) < 0.2
