"""Differential-privacy mechanisms on real vectors.

With a secure :class:`PrivacyRandom` (the default) noise is drawn by OpenDP's vetted samplers, which
are exact and immune to the floating-point attacks on naive Laplace sampling (Mironov 2012).
With a research seed the same distributions are drawn by numpy, reproducibly.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .randomness import PrivacyRandom


@functools.cache
def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


@functools.lru_cache(maxsize=64)
def _opendp_measurement(kind: str, scale: float):
    dp = _opendp()
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    if kind == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T=float), scale=scale)
    return dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale=scale)


def _add_noise(kind: str, values: np.ndarray, scale: float, rng: PrivacyRandom) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if scale <= 0:
        raise ValueError("noise scale must be positive")
    if not rng.secure:
        draw = rng._np.laplace(0.0, scale, values.shape) if kind == "laplace" else rng._np.normal(0.0, scale, values.shape)
        return values + draw
    meas = _opendp_measurement(kind, float(scale))
    noisy = np.asarray(meas(values.ravel().tolist()), dtype=np.float64)
    return noisy.reshape(values.shape)


def laplace_mechanism(values: np.ndarray, sensitivity_l1: float, epsilon: float, rng: PrivacyRandom) -> np.ndarray:
    """ε-DP Laplace mechanism: values + Lap(Δ₁/ε) on every coordinate (book Eq. 5.11)."""
    if epsilon <= 0:
        raise ValueError("epsilon must be positive")
    return _add_noise("laplace", values, sensitivity_l1 / epsilon, rng)


def gaussian_sigma(sensitivity_l2: float, epsilon: float, delta: float) -> float:
    """σ for (ε, δ)-DP through zero-concentrated DP.

    The Gaussian mechanism with σ is ρ-zCDP with ρ = Δ₂²/(2σ²), and ρ-zCDP implies
    (ρ + 2√(ρ ln(1/δ)), δ)-DP (Bun & Steinke 2016, Prop. 1.3). Solving for ρ gives
    √ρ = √(ln(1/δ) + ε) − √(ln(1/δ)); valid for every ε > 0 (unlike the classical ε < 1 bound).
    """
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError("need epsilon > 0 and 0 < delta < 1")
    log_term = math.log(1.0 / delta)
    sqrt_rho = math.sqrt(log_term + epsilon) - math.sqrt(log_term)
    return sensitivity_l2 / (math.sqrt(2.0) * sqrt_rho)


def gaussian_mechanism(
    values: np.ndarray, sensitivity_l2: float, epsilon: float, delta: float, rng: PrivacyRandom
) -> np.ndarray:
    """(ε, δ)-DP Gaussian mechanism with σ from :func:`gaussian_sigma`."""
    return _add_noise("gaussian", values, gaussian_sigma(sensitivity_l2, epsilon, delta), rng)


def metric_laplace(values: np.ndarray, epsilon: float, rng: PrivacyRandom) -> np.ndarray:
    """ε·d₂-privacy (metric privacy) for a k-vector: noise density ∝ exp(−ε‖z‖₂).

    The radius follows Gamma(k, 1/ε) (sum of k exponentials) and the direction is uniform on the
    sphere, so outputs for inputs at Euclidean distance d differ in likelihood by at most e^{εd}.
    """
    values = np.asarray(values, dtype=np.float64)
    k = values.size
    radius = float(rng.exponential(k, 1.0 / epsilon).sum())
    direction = rng.unit_vectors(1, k)[0]
    return values + (radius * direction).reshape(values.shape)
