"""PCA followed by an identity subspace found by LDA (book Ch. 7.3: identity modelled explicitly).

A :class:`Subspace` splits a data vector (a shape or a texture) into *identity coordinates* — the
directions along which different people differ most relative to how one person varies (Fisher's
criterion: between-identity against within-identity scatter) — and everything else. The identity
coordinates are whitened: each has unit standard deviation over identities, so a distance in code
space is measured in units of the between-identity spread.

Let y be the PCA coefficients of a vector and W the generalised eigenvectors of (S_b, S_w) with
Wᵀ S_w W = I and Wᵀ S_b W = Λ. Then y = S_w W (Wᵀ y) exactly (when all P directions are kept), so
changing only the first m generalised coordinates by Δg moves y by S_w W_m Δg and leaves every other
generalised coordinate (expression, pose residue, lighting: within-identity variation) untouched.
The identity code is c = Λ_m^{-1/2} W_mᵀ y.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Subspace:
    """mean (D,), basis (P, D) orthonormal PCA rows, pca_std (P,), proj (P, m) = W_m,
    pattern (P, m) = S_w W_m Λ^{1/2} (PCA displacement per unit of code), lam (m,) Fisher ratios."""

    mean: np.ndarray
    basis: np.ndarray
    pca_std: np.ndarray
    proj: np.ndarray
    pattern: np.ndarray
    lam: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.proj.shape[1])

    def coefficients(self, x: np.ndarray) -> np.ndarray:
        """PCA coefficients of (n, D) or (D,) vectors."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.basis.T

    def reconstruct(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) @ self.basis + self.mean

    def code(self, y: np.ndarray) -> np.ndarray:
        """Whitened identity code of PCA coefficients ``y``."""
        return (np.asarray(y, dtype=np.float64) @ self.proj) / np.sqrt(self.lam)

    def displacement(self, delta_code: np.ndarray) -> np.ndarray:
        """PCA-coefficient change that moves the identity code by ``delta_code`` and no other
        generalised coordinate."""
        return np.asarray(delta_code, dtype=np.float64) @ self.pattern.T

    def mahalanobis(self, y: np.ndarray) -> np.ndarray:
        """Distance of PCA coefficients from the mean in units of the PCA standard deviations."""
        return np.sqrt(((np.asarray(y) / self.pca_std) ** 2).sum(axis=-1))

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{k}": getattr(self, k) for k in ("mean", "basis", "pca_std", "proj", "pattern", "lam")}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> "Subspace":
        return cls(**{k: np.asarray(arrays[f"{prefix}_{k}"], dtype=np.float64) for k in ("mean", "basis", "pca_std", "proj", "pattern", "lam")})


def scatter(y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Within-identity and between-identity covariance of ``y`` over identities with ≥ 2 samples
    (between: covariance of the identity means, each identity weighted once). Returns (S_w, S_b, n_ids)."""
    labels = np.asarray(labels)
    ids, counts = np.unique(labels, return_counts=True)
    keep = ids[counts >= 2]
    p = y.shape[1]
    sw = np.zeros((p, p))
    means = []
    n_w = 0
    for ident in keep:
        yi = y[labels == ident]
        mu = yi.mean(axis=0)
        d = yi - mu
        sw += d.T @ d
        n_w += len(yi) - 1
        means.append(mu)
    sw /= max(n_w, 1)
    m = np.asarray(means)
    sb = np.cov(m.T, bias=False)
    return sw, sb, len(keep)


def fit_subspace(x: np.ndarray, labels: np.ndarray, n_pca: int, n_identity: int, reg: float = 1e-3) -> Subspace:
    """PCA to ``n_pca`` components, then the ``n_identity`` leading Fisher directions.

    ``reg`` adds ``reg × mean eigenvalue`` to S_w so that directions the data never vary along
    within identities cannot get an infinite Fisher ratio.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    n_pca = min(n_pca, len(s))
    basis = vt[:n_pca]
    y = xc @ basis.T
    pca_std = s[:n_pca] / np.sqrt(max(len(x) - 1, 1))
    sw, sb, _ = scatter(y, labels)
    sw = sw + np.eye(n_pca) * reg * np.trace(sw) / n_pca
    # generalised symmetric eigenproblem via whitening by S_w
    ew, ev = np.linalg.eigh(sw)
    whiten = ev / np.sqrt(ew)  # W0ᵀ S_w W0 = I
    lam, u = np.linalg.eigh(whiten.T @ sb @ whiten)
    order = np.argsort(lam)[::-1][:n_identity]
    lam = np.maximum(lam[order], 1e-12)
    proj = whiten @ u[:, order]  # (P, m): projᵀ S_w proj = I, projᵀ S_b proj = Λ
    pattern = sw @ proj * np.sqrt(lam)
    return Subspace(mean=mean, basis=basis, pca_std=pca_std, proj=proj, pattern=pattern, lam=lam)
