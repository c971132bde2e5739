"""Privacy mechanisms on identity codes (plain numpy vectors), independent of any face model.

* ε-IdentityDP (book Ch. 5.3.6, Def. 5.5, Eq. 5.10–5.12): clip the identity code to a box so the
  L1 sensitivity is known, then add Laplace noise of scale Δf/ε to every coordinate.
* IDEudemon's protective perturbation (Ch. 7.3.2, Eq. 7.3): map the code into [−1, 1]^dim, add
  Gaussian noise and truncate back into the box.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import BadArguments
from .mechanisms import laplace_mechanism
from .randomness import PrivacyRandom

IDENTITY_DP_GUARANTEE = (
    "the released identity code is ε-LDP (ε-IdentityDP); the non-identity attributes come from the photo"
)

#: IDEudemon's range of protective noise scales (in unit-box units).
GAUSS_SCALE_MIN = 0.05
GAUSS_SCALE_MAX = 0.40


def _code(z: np.ndarray, name: str = "z") -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or z.size == 0:
        raise BadArguments(f"{name} must be a non-empty 1-D vector")
    if not np.all(np.isfinite(z)):
        raise BadArguments(f"{name} contains NaN or infinity")
    return z


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise BadArguments(f"{name} must be a positive finite number")
    return value


def clip_code(z: np.ndarray, bound: float) -> np.ndarray:
    """Clip every coordinate of z to [−B, B]: the bounded domain of Def. 5.5, so that any two codes
    differ by at most 2B per coordinate."""
    return np.clip(_code(z), -_positive(bound, "bound"), _positive(bound, "bound"))


def identity_sensitivity(bound: float, dim: int) -> float:
    """L1 sensitivity of the clipped code, Δf = max ‖f(x) − f(x')‖₁ = 2·B·dim (Eq. 5.10)."""
    if dim < 1:
        raise BadArguments("dim must be positive")
    return 2.0 * _positive(bound, "bound") * int(dim)


def identity_dp(
    z: np.ndarray, epsilon: float, bound: float, rng: PrivacyRandom | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """ε-IdentityDP (Def. 5.5): z̃ = clip_B(z) + Lap(Δf/ε)^dim with Δf = 2·B·dim (Eq. 5.10–5.12).

    Any two identities' clipped codes differ by at most Δf in L1, so by the Laplace mechanism
    (Eq. 5.11) the released code is ε-locally differentially private. Noise comes from OpenDP's exact
    sampler when ``rng`` is secure (the default), from numpy only with a research seed.
    """
    z = _code(z)
    epsilon = _positive(epsilon, "epsilon")
    bound = _positive(bound, "bound")
    rng = rng if rng is not None else PrivacyRandom()
    dim = z.size
    sensitivity = identity_sensitivity(bound, dim)
    z_noisy = laplace_mechanism(clip_code(z, bound), sensitivity, epsilon, rng)
    report = {
        "epsilon": epsilon,
        "bound": bound,
        "dim": dim,
        "sensitivity_l1": sensitivity,
        "scale": sensitivity / epsilon,
        "guarantee": IDENTITY_DP_GUARANTEE,
        "randomness": rng.describe(),
    }
    return z_noisy, report


def empirical_sensitivity(Z: np.ndarray, block_bytes: int = 32 << 20) -> float:
    """The book's empirical Δf: max_{i<j} ‖Z_i − Z_j‖₁ over a set of codes Z (n × dim).

    Computed by blocks of rows against the rows after them, so memory stays ≈ ``block_bytes`` whatever n.
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise BadArguments("Z must be an (n, dim) array with n ≥ 1")
    if not np.all(np.isfinite(Z)):
        raise BadArguments("Z contains NaN or infinity")
    n = Z.shape[0]
    rows = max(1, block_bytes // (8 * n))
    best = 0.0
    for start in range(0, n - 1, rows):
        stop = min(n, start + rows)
        block = cdist(Z[start:stop], Z[start:], metric="cityblock")
        best = max(best, float(block.max()))
    return best


def _scale_vec(scale_vec: np.ndarray | float, dim: int) -> np.ndarray:
    s = np.broadcast_to(np.asarray(scale_vec, dtype=np.float64), (dim,))
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise BadArguments("the per-coordinate bounds must be positive and finite")
    return s


def to_unit_box(z: np.ndarray, scale_vec: np.ndarray | float = 3.0) -> np.ndarray:
    """Map a code into [−1, 1]^dim: z_unit = clip(z / s, −1, 1) with per-coordinate bounds s (e.g. 3
    between-identity standard deviations of a whitened code) — the domain of Eq. 7.3."""
    z = _code(z)
    return np.clip(z / _scale_vec(scale_vec, z.size), -1.0, 1.0)


def from_unit_box(z_unit: np.ndarray, scale_vec: np.ndarray | float = 3.0) -> np.ndarray:
    """Inverse map of :func:`to_unit_box` on the box: z = z_unit · s."""
    z_unit = _code(z_unit, "z_unit")
    return z_unit * _scale_vec(scale_vec, z_unit.size)


def identity_gauss(z_unit: np.ndarray, scale: float, rng: PrivacyRandom | None = None) -> np.ndarray:
    """IDEudemon's protective perturbation (Eq. 7.3): z' = clip(z_unit + N(0, scale²·I), −1, 1).

    ``scale`` must lie in the book's range 0.05…0.40; this is an empirical protection, not a DP
    guarantee (the noise is unbounded-sensitivity Gaussian truncated to the box).
    """
    z_unit = _code(z_unit, "z_unit")
    if np.any(np.abs(z_unit) > 1.0 + 1e-12):
        raise BadArguments("z_unit must lie in [−1, 1]; map codes with to_unit_box first")
    scale = _positive(scale, "scale")
    if not GAUSS_SCALE_MIN <= scale <= GAUSS_SCALE_MAX:
        raise BadArguments(f"IdentityGauss scale must be within {GAUSS_SCALE_MIN}…{GAUSS_SCALE_MAX}, got {scale}")
    rng = rng if rng is not None else PrivacyRandom()
    return np.clip(z_unit + rng.normal(z_unit.shape, scale), -1.0, 1.0)
