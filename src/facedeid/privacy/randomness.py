"""Randomness for privacy.

By default every draw comes from the operating system's cryptographically secure source
(``os.urandom``); differential-privacy noise additionally goes through OpenDP's samplers
(:mod:`facedeid.privacy.mechanisms`). A *research seed* replaces both by numpy's PCG64 so that a
benchmark run can be repeated exactly; such output is marked as not privacy-protecting.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass
class PrivacyRandom:
    """Source of privacy noise. ``seed=None`` (the default) means cryptographically secure."""

    seed: int | None = None
    secret: bool = False  # the seed is a secret drawn from os.urandom (video tracks), not a research seed

    def __post_init__(self) -> None:
        self._np = np.random.default_rng(self.seed) if self.seed is not None else None

    @classmethod
    def for_track(cls, secret_seed: int) -> "PrivacyRandom":
        """A generator seeded by a track's 128-bit secret from ``os.urandom``: every frame of the track
        gets the same noise realisation, so averaging frames cannot remove it. The seed is never
        stored or written out."""
        return cls(seed=secret_seed, secret=True)

    @property
    def secure(self) -> bool:
        return self._np is None

    def describe(self) -> str:
        if self.secure:
            return "secure (os.urandom; DP noise via OpenDP)"
        if self.secret:
            return "per-track secret seed from os.urandom (same noise on every frame of a track; numpy PCG64 sampler)"
        return f"RESEARCH SEED {self.seed}: reproducible, NOT privacy-protecting"

    def uniform(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Uniform floats in the open interval (0, 1) with 53 random bits each."""
        if self._np is not None:
            u = self._np.random(size)
            return np.where(u == 0.0, np.nextafter(0.0, 1.0), u)
        n = int(np.prod(size))
        words = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
        u = ((words >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
        return u.reshape(size)

    def normal(self, size: int | tuple[int, ...], scale: float = 1.0) -> np.ndarray:
        """Gaussian noise N(0, scale²) (Box–Muller on secure uniforms)."""
        if self._np is not None:
            return self._np.normal(0.0, scale, size)
        n = int(np.prod(size))
        m = (n + 1) // 2
        u1, u2 = self.uniform(m), self.uniform(m)
        r = np.sqrt(-2.0 * np.log(u1))
        z = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:n]
        return (z * scale).reshape(size)

    def exponential(self, size: int | tuple[int, ...], scale: float = 1.0) -> np.ndarray:
        """Exponential draws with mean ``scale`` (inverse transform of secure uniforms)."""
        return -np.log(self.uniform(size)) * scale

    def unit_vectors(self, n: int, dim: int) -> np.ndarray:
        """``n`` directions uniform on the unit sphere in ``dim`` dimensions."""
        z = self.normal((n, dim))
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    def integers(self, high: int, size: int) -> np.ndarray:
        """Uniform integers in [0, high) (rejection sampling on secure words)."""
        if self._np is not None:
            return self._np.integers(0, high, size)
        limit = (1 << 64) - ((1 << 64) % high)
        out: list[int] = []
        while len(out) < size:
            for w in np.frombuffer(os.urandom(8 * size), dtype=np.uint64):
                if int(w) < limit and len(out) < size:
                    out.append(int(w) % high)
        return np.array(out, dtype=np.int64)
