"""Password keys and the identity rotation (book Ch. 6.4, Ch. 8): recoverability, diversity and
controllability (Eq. 6.2–6.7) at the level of identity vectors."""
import math

import numpy as np
import pytest
from scipy import stats

from facedeid.errors import BadArguments
from facedeid.privacy.keys import (
    derive_key,
    direction_from_key,
    frame_from_key,
    gaussian_stream,
    reference_direction,
    reference_frame,
    secret_bytes,
)
from facedeid.privacy.rotation import (
    is_recoverable,
    recover,
    recover_candidates,
    recover_in_frame,
    recover_nearest,
    rotate,
    rotate_in_frame,
    theta_for_level,
)

LEVELS = range(10)
DIMS = [8, 32, 128, 256]


def angle(a: np.ndarray, b: np.ndarray) -> float:
    c = float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.acos(max(-1.0, min(1.0, c)))


def key(i: int) -> bytes:
    return i.to_bytes(32, "big")


def code_at_angle(z_r: np.ndarray, phi: float, rng: np.random.Generator, norm: float = 4.0) -> np.ndarray:
    """A code whose angle to the unit vector z_r is exactly phi."""
    u = rng.normal(size=z_r.size)
    u -= (u @ z_r) * z_r
    u /= np.linalg.norm(u)
    return norm * (math.cos(phi) * z_r + math.sin(phi) * u)


# ---------------------------------------------------------------------------------------------- keys


def test_theta_levels_follow_chapter_6_4_1():
    degrees = [round(math.degrees(theta_for_level(d)), 9) for d in LEVELS]
    assert degrees == [70, 75, 80, 85, 95, 100, 105, 110, 115, 120]
    for bad in (-1, 10, 2.5, True, "3"):
        with pytest.raises(BadArguments):
            theta_for_level(bad)


def test_derive_key_is_deterministic_and_domain_separated():
    salt = b"s" * 16
    k = derive_key("correct horse", salt, "identity-rotation")
    assert len(k) == 32 and k == derive_key("correct horse", salt, "identity-rotation")
    assert k != derive_key("correct horse", salt, "recovery-payload")
    assert k != derive_key("correct horse", b"t" * 16, "identity-rotation")
    assert k != derive_key("correct horsf", salt, "identity-rotation")
    assert len(derive_key("x", salt, "p", 64)) == 64
    with pytest.raises(BadArguments):
        derive_key("", salt, "p")
    with pytest.raises(BadArguments):
        derive_key("x", salt, "")


def test_numbers_are_keys_too():
    assert secret_bytes(7) == secret_bytes("7") == secret_bytes(7.0) == secret_bytes(np.int64(7)) == b"7"
    assert secret_bytes(2.5) == b"2.5"
    assert secret_bytes("é") == secret_bytes("e\u0301")  # NFC
    for bad in (True, float("nan"), None, ""):
        with pytest.raises(BadArguments):
            secret_bytes(bad)


def test_reference_direction_is_a_deterministic_unit_vector():
    z_r = reference_direction(1234, 128)
    assert z_r.shape == (128,) and abs(np.linalg.norm(z_r) - 1) < 1e-12
    np.testing.assert_array_equal(z_r, reference_direction("1234", 128))
    other = reference_direction(1235, 128)
    assert angle(z_r, other) > math.radians(60)
    assert angle(z_r, reference_direction(1234, 128, purpose="other")) > math.radians(60)


def test_gaussian_stream_is_standard_normal_and_stable():
    # known answer: the stream must never change, or old passwords would stop recovering identities
    np.testing.assert_allclose(
        gaussian_stream(bytes(32), b"kat", 4),
        [0.7363661258376275, -0.27083623895193304, -0.3121469670050431, -0.3542028701583211],
        rtol=1e-12,
    )
    x = gaussian_stream(key(1), b"test", 20_001)
    assert x.shape == (20_001,)
    assert stats.kstest(x, "norm").pvalue > 1e-3
    directions = np.array([direction_from_key(key(i), 3) for i in range(2000)])
    assert np.abs(directions.mean(axis=0)).max() < 0.05  # no preferred direction


# -------------------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("dim", DIMS)
def test_rotation_keeps_the_norm_and_turns_by_exactly_theta(dim):
    rng = np.random.default_rng(dim)
    for d in LEVELS:
        theta = theta_for_level(d)
        for i in range(5):
            z_id, z_r = rng.normal(size=dim), direction_from_key(key(100 * d + i), dim)
            z_new = rotate(z_id, z_r, theta)
            assert abs(np.linalg.norm(z_new) - np.linalg.norm(z_id)) < 1e-9
            assert abs(angle(z_id, z_new) - theta) < 1e-9  # controllability
            # z_new stays in the plane of z_id and z_r
            basis, _ = np.linalg.qr(np.stack([z_id, z_r], axis=1))
            assert np.linalg.norm(z_new - basis @ (basis.T @ z_new)) < 1e-9


@pytest.mark.parametrize("dim", DIMS)
def test_the_original_is_always_among_the_closed_form_candidates(dim):
    rng = np.random.default_rng(10 + dim)
    for d in LEVELS:
        theta = theta_for_level(d)
        for i in range(10):
            z_id, z_r = rng.normal(size=dim), direction_from_key(key(1000 + 10 * d + i), dim)
            candidates = recover_candidates(rotate(z_id, z_r, theta), z_r, theta)
            assert 1 <= len(candidates) <= 2
            assert min(np.linalg.norm(c - z_id) for c in candidates) < 1e-9
            for c in candidates:  # every candidate really maps onto z_new
                np.testing.assert_allclose(rotate(c, z_r, theta), rotate(z_id, z_r, theta), atol=1e-9)


@pytest.mark.parametrize("dim", DIMS)
def test_recover_is_exact_when_the_code_is_on_the_usual_side(dim):
    """∠(z_id, z_r) beyond θ for θ < 90° and short of θ for θ > 90° (random keys: ∠ ≈ 90°)."""
    rng = np.random.default_rng(20 + dim)
    for d in LEVELS:
        theta = theta_for_level(d)
        for i in range(10):
            z_r = direction_from_key(key(2000 + 10 * d + i), dim)
            lo, hi = (theta + 0.01, math.pi - 0.01) if theta < math.pi / 2 else (0.01, theta - 0.01)
            z_id = code_at_angle(z_r, rng.uniform(lo, hi), rng, norm=rng.uniform(0.5, 9))
            assert is_recoverable(z_id, z_r, theta)
            np.testing.assert_allclose(recover(rotate(z_id, z_r, theta), z_r, theta), z_id, atol=1e-9)


def test_recover_is_exact_for_random_codes_at_the_outer_levels():
    rng = np.random.default_rng(7)
    for d in (0, 1, 2, 6, 7, 8, 9):
        theta = theta_for_level(d)
        for i in range(40):
            z_id, z_r = rng.normal(size=256), direction_from_key(key(3000 + 100 * d + i), 256)
            np.testing.assert_allclose(recover(rotate(z_id, z_r, theta), z_r, theta), z_id, atol=1e-9)


def test_the_book_map_is_two_to_one_on_the_unusual_side():
    """A code closer to z_r than θ (θ < 90°) lands where another code also lands: recover picks the
    more likely one and is_recoverable warns beforehand."""
    rng = np.random.default_rng(8)
    z_r = direction_from_key(key(4000), 64)
    theta = theta_for_level(0)
    z_id = code_at_angle(z_r, math.radians(40), rng)
    z_new = rotate(z_id, z_r, theta)
    candidates = recover_candidates(z_new, z_r, theta)
    assert len(candidates) == 2 and min(np.linalg.norm(c - z_id) for c in candidates) < 1e-9
    assert not is_recoverable(z_id, z_r, theta)
    assert np.linalg.norm(recover(z_new, z_r, theta) - z_id) > 1


def test_a_wrong_password_recovers_a_different_identity():
    rng = np.random.default_rng(9)
    right, wrong = reference_direction("right password", 128), reference_direction("wrong password", 128)
    far = []
    for d in LEVELS:
        theta = theta_for_level(d)
        for _ in range(10):
            z_id = rng.normal(size=128)
            z_new = rotate(z_id, right, theta)
            assert angle(recover(z_new, right, theta), z_id) < 1e-6 or not is_recoverable(z_id, right, theta)
            far.append(angle(recover(z_new, wrong, theta), z_id))
    assert np.mean(np.array(far) > math.radians(30)) > 0.95
    assert np.median(far) > math.radians(60)


def test_different_passwords_give_different_identities():
    """Diversity: the same face under two passwords becomes two clearly different codes."""
    rng = np.random.default_rng(11)
    theta = theta_for_level(5)
    gaps = [
        angle(rotate(z, direction_from_key(key(2 * i), 128), theta), rotate(z, direction_from_key(key(2 * i + 1), 128), theta))
        for i, z in enumerate(rng.normal(size=(50, 128)))
    ]
    assert min(gaps) > math.radians(30)


def test_degenerate_inputs_raise():
    z_r = direction_from_key(key(5), 16)
    theta = theta_for_level(2)
    with pytest.raises(ValueError):
        rotate(3.0 * z_r, z_r, theta)
    with pytest.raises(ValueError):
        rotate(-2.0 * z_r, z_r, theta)
    with pytest.raises(ValueError):
        rotate(np.zeros(16), z_r, theta)
    with pytest.raises(ValueError):
        recover(5.0 * z_r, z_r, theta)
    with pytest.raises(BadArguments):
        rotate(np.ones(8), z_r, theta)
    with pytest.raises(BadArguments):
        rotate(np.ones(16), z_r, 0.0)


# ----------------------------------------------------------------------- exactly invertible variant


@pytest.mark.parametrize("dim", DIMS)
def test_frame_rotation_is_exactly_invertible_with_angle_theta(dim):
    rng = np.random.default_rng(30 + dim)
    frame = frame_from_key(key(dim), dim)
    np.testing.assert_allclose(frame.T @ frame, np.eye(dim), atol=1e-10)
    for d in LEVELS:
        theta = theta_for_level(d)
        for _ in range(5):
            z_id = rng.normal(size=dim) * rng.uniform(0.1, 3)
            z_new = rotate_in_frame(z_id, frame, theta)
            assert abs(angle(z_id, z_new) - theta) < 1e-9
            assert abs(np.linalg.norm(z_new) - np.linalg.norm(z_id)) < 1e-9
            np.testing.assert_allclose(recover_in_frame(z_new, frame, theta), z_id, atol=1e-9)
    wrong = frame_from_key(key(dim + 1), dim)
    z_id = rng.normal(size=dim)
    z_new = rotate_in_frame(z_id, frame, theta_for_level(0))
    assert angle(recover_in_frame(z_new, wrong, theta_for_level(0)), z_id) > math.radians(30)


def test_reference_frame_from_a_password():
    q = reference_frame("pw", 32)
    np.testing.assert_allclose(q @ q.T, np.eye(32), atol=1e-10)
    with pytest.raises(BadArguments):
        rotate_in_frame(np.ones(31), np.eye(31), 1.0)


@pytest.mark.parametrize("dim", [12, 48])
def test_recover_nearest_equals_recover_on_rotations_and_never_refuses(dim):
    """recover_nearest is recover() wherever that is exact; for a noisy or wrongly keyed code it
    still answers (a code of the same norm) instead of raising."""
    rng = np.random.default_rng(dim)
    theta = theta_for_level(5)
    for _ in range(100):
        z, z_r = rng.standard_normal(dim), rng.standard_normal(dim)
        z_new = rotate(z, z_r, theta)
        if is_recoverable(z, z_r, theta):
            assert np.allclose(recover_nearest(z_new, z_r, theta), z, atol=1e-9)
        noisy = recover_nearest(z_new + 0.05 * rng.standard_normal(dim), z_r, theta)
        assert np.all(np.isfinite(noisy))
    z, wrong = rng.standard_normal(dim), rng.standard_normal(dim)
    out = recover_nearest(rotate(z, rng.standard_normal(dim), theta), wrong, theta)
    assert np.linalg.norm(out) == pytest.approx(np.linalg.norm(z)) and np.linalg.norm(out - z) > 0.3 * np.linalg.norm(z)
