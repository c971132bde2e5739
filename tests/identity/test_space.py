"""The recognizer identity space (identity-password's rotation space): the whitening round trip and
the PCA on synthetic descriptors with a known structure; the shipped space's shape and spread."""
from __future__ import annotations

import numpy as np
import pytest

from facedeid.identity.space import DEFAULT_K, fit_space, load_space


def test_fit_space_finds_the_principal_directions_and_round_trips():
    rng = np.random.default_rng(0)
    true = np.linalg.qr(rng.standard_normal((128, 3)))[0]
    e = 0.5 + (rng.standard_normal((4000, 3)) * [3.0, 2.0, 1.0]) @ true.T + 0.01 * rng.standard_normal((4000, 128))
    sp = fit_space(e, k=3)
    assert np.allclose(sp.std, [3.0, 2.0, 1.0], rtol=0.05)
    assert np.allclose(np.abs(sp.basis.T @ true), np.eye(3), atol=0.05)
    x = e[7]
    assert np.allclose(sp.descriptor(sp.whiten(x), x), x)  # w and the residual give e back exactly
    moved = sp.moved(x, lambda w: w + [1.0, 0.0, 0.0])
    assert np.linalg.norm(moved - x) == pytest.approx(sp.std[0], rel=1e-9)
    with pytest.raises(ValueError):
        fit_space(e[:3], k=3)


def test_the_shipped_space_is_a_real_fit():
    sp = load_space()
    assert sp.k == DEFAULT_K and sp.mean.shape == (128,)
    assert np.allclose(sp.basis.T @ sp.basis, np.eye(sp.k), atol=1e-4)
    assert np.all(np.diff(sp.std) <= 1e-6) and 0.05 < sp.std[0] < 0.5  # sorted; dlib descriptors' spread
