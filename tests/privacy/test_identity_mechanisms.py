"""ε-IdentityDP (Ch. 5.3.6) and IDEudemon's IdentityGauss (Ch. 7.3.2) on identity code vectors."""
import itertools

import numpy as np
import pytest

from facedeid.errors import BadArguments
from facedeid.privacy.identity_mechanisms import (
    IDENTITY_DP_GUARANTEE,
    clip_code,
    empirical_sensitivity,
    from_unit_box,
    identity_dp,
    identity_gauss,
    identity_sensitivity,
    to_unit_box,
)
from facedeid.privacy.randomness import PrivacyRandom


def test_clipping_respects_the_bound():
    z = np.random.default_rng(0).normal(scale=4, size=1000)
    c = clip_code(z, 2.5)
    assert np.abs(c).max() <= 2.5
    inside = np.abs(z) <= 2.5
    np.testing.assert_array_equal(c[inside], z[inside])
    with pytest.raises(BadArguments):
        clip_code(z, 0)


def test_sensitivity_is_2_b_dim_and_is_attained():
    assert identity_sensitivity(3.0, 64) == 384.0
    rng = np.random.default_rng(1)
    pairs = rng.normal(scale=5, size=(500, 2, 64))
    l1 = np.abs(clip_code_rows(pairs[:, 0]) - clip_code_rows(pairs[:, 1])).sum(axis=1)
    assert l1.max() <= 384.0
    corner = np.full(64, 3.0)
    assert np.abs(clip_code(corner * 10, 3.0) - clip_code(-corner * 10, 3.0)).sum() == 384.0


def clip_code_rows(rows: np.ndarray) -> np.ndarray:
    return np.stack([clip_code(r, 3.0) for r in rows])


def test_laplace_scale_with_a_research_seed():
    dim, bound, epsilon = 200, 1.5, 30.0
    z = np.random.default_rng(2).uniform(-1, 1, dim)
    rng = PrivacyRandom(seed=5)
    noise = np.concatenate([identity_dp(z, epsilon, bound, rng)[0] - z for _ in range(100)])  # 20 000 draws
    scale = 2 * bound * dim / epsilon
    assert noise.size == 20_000
    assert abs(np.abs(noise).mean() / scale - 1) < 0.03  # E|Lap(b)| = b
    assert abs(np.median(noise)) < 0.05 * scale


def test_report_describes_the_guarantee():
    _, report = identity_dp(np.zeros(16), 2.0, 3.0, PrivacyRandom(seed=1))
    assert report["epsilon"] == 2.0 and report["bound"] == 3.0 and report["dim"] == 16
    assert report["sensitivity_l1"] == 96.0 and report["scale"] == 48.0
    assert report["guarantee"] == IDENTITY_DP_GUARANTEE and "ε-IdentityDP" in report["guarantee"]
    assert "RESEARCH SEED" in report["randomness"]


def test_secure_path_uses_opendp_and_differs_between_calls():
    z = np.array([5.0, -7.0, 0.3, 1.0, -0.2, 2.9, -3.1, 0.0])
    a, report = identity_dp(z, 1e5, 3.0)  # default rng: secure
    b, _ = identity_dp(z, 1e5, 3.0, PrivacyRandom())
    assert report["randomness"].startswith("secure")
    assert not np.array_equal(a, b)
    # tiny noise (scale 4.8e-4): the output sits on the *clipped* code
    np.testing.assert_allclose(a, np.clip(z, -3, 3), atol=0.02)
    loud, _ = identity_dp(z, 1.0, 3.0)
    assert np.abs(loud - np.clip(z, -3, 3)).mean() > 1.0


def test_bad_dp_arguments():
    for eps, bound in ((0, 1), (-1, 1), (1, 0), (float("inf"), 1)):
        with pytest.raises(BadArguments):
            identity_dp(np.zeros(4), eps, bound)
    with pytest.raises(BadArguments):
        identity_dp(np.array([0.0, np.nan]), 1.0, 1.0)
    with pytest.raises(BadArguments):
        identity_dp(np.zeros((2, 2)), 1.0, 1.0)


@pytest.mark.parametrize("n,dim", [(1, 3), (2, 4), (37, 5), (60, 12)])
def test_empirical_sensitivity_matches_brute_force(n, dim):
    Z = np.random.default_rng(n).normal(size=(n, dim))
    brute = max((np.abs(a - b).sum() for a, b in itertools.combinations(Z, 2)), default=0.0)
    assert empirical_sensitivity(Z) == pytest.approx(brute, rel=1e-12)
    assert empirical_sensitivity(Z, block_bytes=8 * n) == pytest.approx(brute, rel=1e-12)  # one row per block


def test_unit_box_maps():
    z = np.array([-9.0, -3.0, -1.5, 0.0, 2.0, 6.0])
    u = to_unit_box(z, 3.0)
    np.testing.assert_allclose(u, [-1, -1, -0.5, 0, 2 / 3, 1])
    np.testing.assert_allclose(from_unit_box(u, 3.0), [-3, -3, -1.5, 0, 2, 3])
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    inner = np.array([0.5, -1.0, 2.0, 3.9, -4.0, 0.0])
    np.testing.assert_allclose(from_unit_box(to_unit_box(inner, s), s), inner)
    with pytest.raises(BadArguments):
        to_unit_box(z, np.array([1.0, 0, 1, 1, 1, 1]))


def test_identity_gauss_truncates_and_scales():
    rng = PrivacyRandom(seed=3)
    zero = np.zeros(20_000)
    stds = []
    for scale in (0.05, 0.1, 0.2, 0.3, 0.4):
        out = identity_gauss(zero, scale, rng)
        assert np.abs(out).max() <= 1.0
        stds.append(out.std())
    assert stds == sorted(stds)  # more noise, more spread
    assert stds[0] == pytest.approx(0.05, rel=0.03)  # truncation is negligible at the centre
    edge = identity_gauss(np.full(20_000, 0.95), 0.4, rng)
    assert np.abs(edge).max() <= 1.0 and (edge == 1.0).mean() > 0.3 and edge.mean() < 0.95
    secure = identity_gauss(np.zeros(8), 0.2)
    assert np.abs(secure).max() <= 1.0 and not np.array_equal(secure, identity_gauss(np.zeros(8), 0.2))


def test_identity_gauss_refuses_scales_outside_the_book_range():
    for scale in (0.0, 0.04, 0.41, 1.0):
        with pytest.raises(BadArguments):
            identity_gauss(np.zeros(4), scale)
    with pytest.raises(BadArguments):
        identity_gauss(np.array([0.0, 1.5]), 0.1)
