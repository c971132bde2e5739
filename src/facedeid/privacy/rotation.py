"""Password-keyed rotation of identity codes (book Ch. 6.4 and Ch. 8).

The identity code z_id is rotated by an angle θ in the plane it spans with the password's reference
direction z_r = f(p) (:func:`facedeid.privacy.keys.reference_direction`), keeping its norm
(Eq. 6.16–6.20 / Eq. 8.5–8.6). θ comes from a privacy level d (Ch. 6.4.1).

A caveat found while implementing the inverse (see :func:`recover_candidates`): the book's map is
two-to-one on part of the sphere. A code z_new can come from two originals, one on each side of it at
angle θ, when the angle γ between z_new and z_r is below min(θ, 180° − θ). :func:`recover` then
returns the original closest to orthogonal to z_r, which is the more likely one because a random z_r
is nearly orthogonal to any fixed code in many dimensions (and is why the levels skip θ = 90°); the
choice is wrong only when the true angle between z_id and z_r is on the other side of θ than 90°
(about 8 % of random codes at θ = 85° or 95° in 256 dimensions, far fewer at the outer levels, many
more in low dimensions). :func:`is_recoverable` tells the caller before it releases an image.
:func:`rotate_in_frame` is an exactly invertible alternative with the same angle and norm properties.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import BadArguments

_DEGENERATE = 1e-10  # relative size below which a vector counts as parallel to another


def theta_for_level(d: int) -> float:
    """Rotation angle θ (radians) for privacy level d ∈ {0, …, 9} (book Ch. 6.4.1):
    θ = 70° + 5°·d for d < 4 and θ = 70° + 5°·(d + 1) for d ≥ 4, i.e. 70…85° and 95…120° (90° is skipped).
    """
    if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 0 <= int(d) <= 9:
        raise BadArguments(f"the privacy level must be an integer 0…9, got {d!r}")
    d = int(d)
    degrees = 70 + 5 * d if d < 4 else 70 + 5 * (d + 1)
    return math.radians(degrees)


def _vector(z: np.ndarray, name: str) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or z.size < 2:
        raise BadArguments(f"{name} must be a 1-D vector with at least 2 coordinates")
    if not np.all(np.isfinite(z)):
        raise BadArguments(f"{name} contains NaN or infinity")
    return z


def _check_theta(theta: float) -> float:
    theta = float(theta)
    if not 0.0 < theta < math.pi:
        raise BadArguments("θ must lie strictly between 0 and π radians")
    return theta


def _unit(z: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    norm = float(np.linalg.norm(z))
    if norm == 0.0:
        raise ValueError(f"{name} is the zero vector; its direction is undefined")
    return z / norm, norm


def _orthogonal_part(z_r: np.ndarray, z_bar: np.ndarray, what: str) -> np.ndarray:
    """unit(z_r − (z_r·z̄) z̄), or ValueError when z_r is (numerically) parallel to z̄."""
    z_r_hat, _ = _unit(z_r, "z_r")
    z_90 = z_r_hat - float(z_r_hat @ z_bar) * z_bar
    norm = float(np.linalg.norm(z_90))
    if norm < _DEGENERATE:
        raise ValueError(f"z_r is parallel to {what}: the rotation plane is undefined")
    return z_90 / norm


def rotate(z_id: np.ndarray, z_r: np.ndarray, theta: float) -> np.ndarray:
    """Rotate z_id by θ towards z_r, keeping its norm (book Eq. 6.16–6.20 / Eq. 8.5–8.6):

    z̄ = z_id/‖z_id‖,  z_90 = z_r − (z_r·z̄) z̄,  ẑ_90 = z_90/‖z_90‖,
    z_new = ‖z_id‖ (z̄ cos θ + ẑ_90 sin θ).

    ∠(z_id, z_new) = θ and ‖z_new‖ = ‖z_id‖. Raises ValueError when z_id is zero or parallel to z_r.
    """
    z_id, z_r, theta = _vector(z_id, "z_id"), _vector(z_r, "z_r"), _check_theta(theta)
    if z_id.shape != z_r.shape:
        raise BadArguments("z_id and z_r must have the same dimension")
    z_bar, norm = _unit(z_id, "z_id")
    z_90_hat = _orthogonal_part(z_r, z_bar, "z_id")
    return norm * (math.cos(theta) * z_bar + math.sin(theta) * z_90_hat)


def recover_candidates(z_new: np.ndarray, z_r: np.ndarray, theta: float) -> list[np.ndarray]:
    """Every z_id with rotate(z_id, z_r, θ) = z_new (one or two vectors), closed form.

    Derivation. z_new = ‖z_id‖(z̄ cos θ + ẑ_90 sin θ) lies in P = span(z̄, ẑ_90) = span(z̄, z_r), and
    so does z_r; unless z_r ∥ z_new, P = span(ẑ_new, z_r), which the recoverer can compute. With the
    orthonormal basis ẑ_new, w = unit(z_r − (z_r·ẑ_new) ẑ_new) of P, and ∠(z̄, ẑ_new) = θ, the original
    direction is cos θ ẑ_new ∓ sin θ w and its norm is ‖z_new‖ (Eq. 6.20 keeps the norm). So
    z_id ∈ {‖z_new‖(cos θ ẑ_new − sin θ w), ‖z_new‖(cos θ ẑ_new + sin θ w)}.
    A candidate is kept iff its forward rotation reproduces z_new. With γ = ∠(z_new, z_r), the "away"
    candidate (−) is valid iff γ + θ < π (z_id beyond z_new, the usual case for θ < 90°) and the
    "towards" candidate (+) iff γ < θ (z_new overshot z_r, usual for θ > 90°); both when
    γ < min(θ, π − θ). Raises ValueError when z_r is parallel to z_new.
    """
    z_new, z_r, theta = _vector(z_new, "z_new"), _vector(z_r, "z_r"), _check_theta(theta)
    norm = float(np.linalg.norm(z_new))
    out = []
    for candidate in _closed_form_candidates(z_new, z_r, theta):
        try:
            again = rotate(candidate, z_r, theta)
        except ValueError:
            continue
        if np.linalg.norm(again - z_new) <= 1e-9 * max(norm, 1.0):
            out.append(candidate)
    return out


def _closed_form_candidates(z_new: np.ndarray, z_r: np.ndarray, theta: float) -> list[np.ndarray]:
    """‖z_new‖(cos θ ẑ_new ∓ sin θ w), w = unit(z_r − (z_r·ẑ_new) ẑ_new): the two inverses of the
    derivation in :func:`recover_candidates`, before any check."""
    if z_new.shape != z_r.shape:
        raise BadArguments("z_new and z_r must have the same dimension")
    z_new_hat, norm = _unit(z_new, "z_new")
    w = _orthogonal_part(z_r, z_new_hat, "z_new")
    return [norm * (math.cos(theta) * z_new_hat + sign * math.sin(theta) * w) for sign in (-1.0, 1.0)]


def _most_orthogonal(candidates: list[np.ndarray], z_r: np.ndarray) -> np.ndarray:
    """The candidate closest to orthogonal to z_r (the likeliest original for a random key)."""
    z_r_hat = np.asarray(z_r, dtype=np.float64) / np.linalg.norm(z_r)
    return min(candidates, key=lambda c: abs(float(c @ z_r_hat)) / float(np.linalg.norm(c)))


def recover(z_new: np.ndarray, z_r: np.ndarray, theta: float) -> np.ndarray:
    """Inverse of :func:`rotate` given the password's z_r and θ (book recoverability, Eq. 6.2–6.3).

    Among :func:`recover_candidates`, returns the one closest to orthogonal to z_r — the most likely
    original, since the density of ∠(z_id, z_r) for a random key is ∝ sin^{dim−2}, peaked at 90°.
    Exact whenever :func:`is_recoverable` held for the original. Raises ValueError for degenerate input.
    """
    candidates = recover_candidates(z_new, z_r, theta)
    if not candidates:
        raise ValueError("no code rotates onto z_new with this z_r and θ (numerically degenerate input)")
    return _most_orthogonal(candidates, z_r)


def recover_nearest(z_new: np.ndarray, z_r: np.ndarray, theta: float) -> np.ndarray:
    """Inverse of :func:`rotate` that never refuses: of the two closed-form candidates
    ‖z_new‖(cos θ ẑ_new ∓ sin θ w) (see :func:`recover_candidates`) the one closest to orthogonal to
    z_r, whether or not its forward rotation reproduces z_new exactly. For a z_new that really is a
    rotation this is :func:`recover`; for a noisy one (a descriptor measured on a rendered face, or a
    wrong password) it still answers, which is what a recoverer measuring an image needs. It is not
    continuous everywhere: where the two candidates are about equally orthogonal to z_r the choice
    flips, and near z_r ∥ z_new noise is amplified by about 1/sin ∠(z_new, z_r).
    Raises ValueError only when z_r ∥ z_new or z_new = 0."""
    z_new, z_r, theta = _vector(z_new, "z_new"), _vector(z_r, "z_r"), _check_theta(theta)
    return _most_orthogonal(_closed_form_candidates(z_new, z_r, theta), z_r)


def is_recoverable(z_id: np.ndarray, z_r: np.ndarray, theta: float) -> bool:
    """Whether recover(rotate(z_id, z_r, θ), z_r, θ) gives z_id back (to 1e-9 relative)."""
    try:
        back = recover(rotate(z_id, z_r, theta), z_r, theta)
    except ValueError:
        return False
    z_id = np.asarray(z_id, dtype=np.float64)
    return bool(np.linalg.norm(back - z_id) <= 1e-9 * max(float(np.linalg.norm(z_id)), 1.0))


def _frame_rotation(z: np.ndarray, frame: np.ndarray, theta: float) -> np.ndarray:
    z = _vector(z, "z")
    frame = np.asarray(frame, dtype=np.float64)
    dim = z.size
    if frame.shape != (dim, dim):
        raise BadArguments("the frame must be a dim × dim orthogonal matrix")
    if dim % 2:
        raise BadArguments("the exactly invertible rotation needs an even dimension")
    y = (frame.T @ z).reshape(-1, 2)
    c, s = math.cos(theta), math.sin(theta)
    turned = np.stack([c * y[:, 0] - s * y[:, 1], s * y[:, 0] + c * y[:, 1]], axis=1)
    return frame @ turned.ravel()


def rotate_in_frame(z_id: np.ndarray, frame: np.ndarray, theta: float) -> np.ndarray:
    """Exactly invertible variant of Eq. 6.20: z_new = ‖z_id‖(z̄ cos θ + (J z̄) sin θ) = exp(θJ) z_id.

    J = Q J₀ Qᵀ with Q = :func:`facedeid.privacy.keys.reference_frame` (password-derived) and J₀ the
    block-diagonal 90° rotation: J z̄ is a unit vector orthogonal to z̄ for every z̄, so ∠(z_id, z_new) = θ
    and the norm is kept exactly as in the book, but the map is a fixed orthogonal matrix, hence
    one-to-one (:func:`recover_in_frame`). Needs an even dimension.
    """
    return _frame_rotation(z_id, frame, _check_theta(theta))


def recover_in_frame(z_new: np.ndarray, frame: np.ndarray, theta: float) -> np.ndarray:
    """Inverse of :func:`rotate_in_frame`: z_id = exp(−θJ) z_new, exact for every z_new."""
    return _frame_rotation(z_new, frame, -_check_theta(theta))
