"""Keys from passwords: a memory-hard KDF and the password-derived reference directions.

Book Ch. 6 (Eq. 6.9) and Ch. 8 (Eq. 8.4) turn the user's key p ("a number or string") into a
reference identity direction z_r = f(p). Recovery must re-derive z_r from the password alone, so the
salt of that derivation is FIXED, public and versioned (:data:`REFERENCE_SALT`); what slows a brute
force search over passwords is the memory-hard scrypt KDF (about 16 MiB and ~50–100 ms per guess),
not the salt. Payload encryption (:mod:`facedeid.media.payload`) uses the same KDF with a random
salt stored next to the ciphertext.

The expansion of a key into Gaussian coordinates uses a SHAKE-256 stream and Box–Muller written out
here, not numpy's generators, whose streams are not guaranteed to stay the same across numpy
versions: a password must give the same z_r years later.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import struct
import unicodedata

import numpy as np

from ..errors import BadArguments

Secret = str | bytes | int | float

#: Fixed public salt for z_r = f(p); bump the version only together with a new recovery format.
REFERENCE_SALT = b"facedeid/identity-rotation/v1"

#: scrypt cost: N = 2**SCRYPT_LOG2_N, r, p (RFC 7914). 128·r·N bytes = 16 MiB of memory per guess.
SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 1

_STREAM_LABEL = b"facedeid/gaussian-stream/v1"


def secret_bytes(secret: Secret) -> bytes:
    """Normalise a key given as text, bytes or a number (Ukey, Ch. 8) to bytes.

    Text is NFC-normalised UTF-8; integers (and integral floats, so ``7``, ``7.0`` and ``"7"``
    agree) become their decimal text; other finite floats their shortest round-trip text.
    """
    if isinstance(secret, (bytes, bytearray, memoryview)):
        raw = bytes(secret)
    elif isinstance(secret, str):
        raw = unicodedata.normalize("NFC", secret).encode("utf-8")
    elif isinstance(secret, bool):
        raise BadArguments("a key must be a string or a number, not a boolean")
    elif isinstance(secret, numbers.Integral):
        raw = str(int(secret)).encode("ascii")
    elif isinstance(secret, numbers.Real):
        value = float(secret)
        if not math.isfinite(value):
            raise BadArguments("a numeric key must be finite")
        raw = (str(int(value)) if value.is_integer() else repr(value)).encode("ascii")
    else:
        raise BadArguments(f"a key must be a string, bytes or a number, not {type(secret).__name__}")
    if not raw:
        raise BadArguments("the key is empty")
    return raw


def derive_key(
    secret: Secret,
    salt: bytes,
    purpose: str,
    n_bytes: int = 32,
    *,
    log2_n: int = SCRYPT_LOG2_N,
    r: int = SCRYPT_R,
    p: int = SCRYPT_P,
) -> bytes:
    """Memory-hard key derivation K = scrypt(p, purpose ‖ salt) (RFC 7914).

    ``purpose`` domain-separates uses: the same password and salt give unrelated keys for
    "identity-rotation" and "recovery-payload". It is length-prefixed into the scrypt salt so that no
    two (purpose, salt) pairs collide.
    """
    if not purpose:
        raise BadArguments("a key derivation needs a purpose")
    if not 1 <= n_bytes <= 1024:
        raise BadArguments("n_bytes must be within 1…1024")
    if not (1 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise BadArguments("scrypt parameters out of range")
    tag = purpose.encode("utf-8")
    full_salt = b"facedeid-kdf/v1\x00" + struct.pack(">H", len(tag)) + tag + bytes(salt)
    n = 1 << log2_n
    maxmem = 128 * r * n * p + 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(secret_bytes(secret), salt=full_salt, n=n, r=r, p=p, maxmem=maxmem, dklen=n_bytes)


def gaussian_stream(key: bytes, label: bytes, count: int) -> np.ndarray:
    """``count`` standard normal numbers expanded from ``key`` (SHAKE-256 → 53-bit uniforms in (0, 1)
    → Box–Muller). Deterministic and independent of the numpy version."""
    if count < 0:
        raise BadArguments("count must be non-negative")
    pairs = (count + 1) // 2
    material = hashlib.shake_256(_STREAM_LABEL + b"\x00" + label + b"\x00" + key).digest(16 * pairs)
    words = np.frombuffer(material, dtype=">u8").astype(np.uint64)
    u = ((words >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u1, u2 = u[0::2], u[1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    z = np.empty(2 * pairs)
    z[0::2] = radius * np.cos(2.0 * np.pi * u2)
    z[1::2] = radius * np.sin(2.0 * np.pi * u2)
    return z[:count]


def _check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 2:
        raise BadArguments("the dimension must be an integer ≥ 2")
    return int(dim)


def direction_from_key(key: bytes, dim: int) -> np.ndarray:
    """The unit vector z_r for an already derived key (lets a caller derive once, use many dims)."""
    dim = _check_dim(dim)
    z = gaussian_stream(key, b"direction/" + str(dim).encode(), dim)
    return z / np.linalg.norm(z)


def reference_direction(secret: Secret, dim: int, purpose: str = "identity-rotation") -> np.ndarray:
    """z_r = f(p), a unit vector uniform on the sphere S^{dim−1} (book Eq. 6.9 / Eq. 8.4).

    f = scrypt with the fixed :data:`REFERENCE_SALT`, then a standard normal vector from the key's
    SHAKE-256 stream, normalised. The same secret and dim always give the same direction.
    """
    key = derive_key(secret, REFERENCE_SALT, purpose)
    return direction_from_key(key, dim)


def frame_from_key(key: bytes, dim: int) -> np.ndarray:
    """A Haar-random orthogonal matrix Q (dim × dim) from a derived key: QR of a Gaussian matrix with
    the signs of R's diagonal moved into Q (Mezzadri 2007)."""
    dim = _check_dim(dim)
    a = gaussian_stream(key, b"frame/" + str(dim).encode(), dim * dim).reshape(dim, dim)
    q, r = np.linalg.qr(a)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def reference_frame(secret: Secret, dim: int, purpose: str = "identity-rotation-frame") -> np.ndarray:
    """Password-derived orthogonal frame Q for the exactly invertible rotation
    (:func:`facedeid.privacy.rotation.rotate_in_frame`); same fixed salt as z_r = f(p)."""
    key = derive_key(secret, REFERENCE_SALT, purpose)
    return frame_from_key(key, dim)
