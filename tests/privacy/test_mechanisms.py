import math

import numpy as np
import pytest
from scipy import stats

from facedeid.methods.cells import CellGrid
from facedeid.methods.dp_obfuscation import dp_pix_cells
from facedeid.privacy.mechanisms import gaussian_mechanism, gaussian_sigma, laplace_mechanism, metric_laplace
from facedeid.privacy.randomness import PrivacyRandom


@pytest.mark.parametrize("rng", [PrivacyRandom(), PrivacyRandom(3)], ids=["secure", "seeded"])
def test_laplace_mechanism_has_the_right_distribution(rng):
    x = laplace_mechanism(np.zeros(4000), sensitivity_l1=2.0, epsilon=0.5, rng=rng)  # scale 4
    assert stats.kstest(x, stats.laplace(scale=4.0).cdf).pvalue > 1e-3
    assert abs(np.median(np.abs(x)) - 4.0 * math.log(2)) < 0.4


@pytest.mark.parametrize("rng", [PrivacyRandom(), PrivacyRandom(3)], ids=["secure", "seeded"])
def test_gaussian_mechanism_sigma(rng):
    sigma = gaussian_sigma(1.0, 1.0, 1e-5)
    x = gaussian_mechanism(np.zeros(4000), 1.0, 1.0, 1e-5, rng)
    assert stats.kstest(x / sigma, "norm").pvalue > 1e-3


@pytest.mark.parametrize("eps,delta", [(0.1, 1e-5), (1.0, 1e-6), (8.0, 1e-3)])
def test_gaussian_sigma_meets_the_zcdp_conversion(eps, delta):
    sigma = gaussian_sigma(2.0, eps, delta)
    rho = 2.0**2 / (2 * sigma**2)
    assert math.isclose(rho + 2 * math.sqrt(rho * math.log(1 / delta)), eps, rel_tol=1e-9)


def test_metric_laplace_radius_is_gamma():
    rng = PrivacyRandom(5)
    k, eps = 6, 0.5
    r = np.array([np.linalg.norm(metric_laplace(np.zeros(k), eps, rng)) for _ in range(3000)])
    assert stats.kstest(r, stats.gamma(a=k, scale=1 / eps).cdf).pvalue > 1e-3


def test_secure_random_source_properties():
    rng = PrivacyRandom()
    u = rng.uniform(100000)
    assert u.min() > 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    z = rng.normal(100000)
    assert abs(z.std() - 1) < 0.02 and abs(z.mean()) < 0.02
    i = rng.integers(7, 7000)
    assert set(np.unique(i)) == set(range(7))
    assert rng.secure and "secure" in rng.describe()
    assert "NOT privacy" in PrivacyRandom(1).describe()


def test_research_seed_is_reproducible():
    assert np.array_equal(PrivacyRandom(9).normal(10), PrivacyRandom(9).normal(10))
    assert not np.array_equal(PrivacyRandom().normal(10), PrivacyRandom().normal(10))


def test_dp_pix_noise_scale_matches_fan():
    roi = np.full((320, 320, 3), 128, np.uint8)
    b, m, eps = 16, 1, 10.0
    grid = CellGrid.build(roi.shape[:2], (0, 0), b, b)
    noisy = dp_pix_cells(roi, grid, m, eps, PrivacyRandom())
    scale = 3 * 255 * m / (b * b * eps)  # colour: L1 over 3 channels
    dev = (noisy - 128).ravel()
    assert stats.kstest(dev, stats.laplace(scale=scale).cdf).pvalue > 1e-3


def test_partial_cells_get_more_noise():
    roi = np.full((40, 40), 100, np.uint8)[..., None].repeat(3, -1)
    grid = CellGrid.build(roi.shape[:2], (0, 0), 16, 16)  # 2 full columns + a 8-pixel-wide column
    assert sorted(set(grid.counts.tolist())) == [64, 128, 256]
