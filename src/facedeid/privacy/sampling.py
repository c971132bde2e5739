"""Poisson subsampling and privacy amplification by subsampling (book Ch. 4.3.2).

Poisson subsampling with ratio γ keeps every record of a data set independently with probability γ
(a Bernoulli(γ) coin per record, drawn from :class:`~facedeid.privacy.randomness.PrivacyRandom`, i.e.
``os.urandom`` unless a research seed is set). The size of the subsample is itself random,
Binomial(n, γ), and is not fixed in advance: that is what the amplification theorem needs.

Amplification (Li, Qardaji & Su 2012, Thm. 1; Balle, Barthe & Gaboardi 2018, Thm. 8): if a mechanism
M is (ε, δ)-DP with respect to adding or removing one record, then M applied to a Poisson subsample
with ratio γ is (ε', γδ)-DP with

    ε' = ln(1 + γ (e^ε − 1)).

The guarantee is for the add/remove-one-record neighbour relation; it is only valid when the records
that are *not* sampled have no other influence on the output.
"""
from __future__ import annotations

import math

import numpy as np

from .randomness import PrivacyRandom


def poisson_mask(n: int, gamma: float, rng: PrivacyRandom) -> np.ndarray:
    """Boolean mask of length ``n``: each entry True independently with probability ``gamma``."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError("gamma must lie in [0, 1]")
    if n <= 0:
        return np.zeros(0, dtype=bool)
    if gamma >= 1.0:
        return np.ones(n, dtype=bool)
    return rng.uniform(n) < gamma


def poisson_subsample(n: int, gamma: float, rng: PrivacyRandom) -> np.ndarray:
    """Indices (sorted) of a Poisson subsample with ratio ``gamma`` of ``range(n)`` (Ch. 4.3.2)."""
    return np.flatnonzero(poisson_mask(n, gamma, rng))


def amplified_epsilon(epsilon: float, gamma: float) -> float:
    """ε' = ln(1 + γ(e^ε − 1)) of an ε-DP mechanism run on a Poisson subsample with ratio γ.

    Computed as ε + ln(γ + (1 − γ)e^{−ε}), which is exact and does not overflow for large ε.
    ε' ≤ ε always, ε' ≈ γε for small ε, and ε' = ε for γ = 1.
    """
    if epsilon < 0 or not 0.0 <= gamma <= 1.0:
        raise ValueError("need epsilon >= 0 and 0 <= gamma <= 1")
    if gamma == 0.0:
        return 0.0
    if math.isinf(epsilon):
        return math.inf
    return epsilon + math.log(gamma + (1.0 - gamma) * math.exp(-epsilon))


def amplified_delta(delta: float, gamma: float) -> float:
    """δ' = γδ for an (ε, δ)-DP mechanism on a Poisson subsample with ratio γ."""
    return gamma * delta
