"""The attribute classifier of book Ch. 4.4.1 for the 13 attributes of Ch. 4.5.2.

A linear model or a one-hidden-layer perceptron on standardised features
(:mod:`facedeid.attributes.features`: dlib 128-D descriptor + landmark-region texture statistics),
trained with the multi-label soft-margin loss of Eq. 4.3,

    L(x, y) = −1/C Σ_c [ y_c log σ(x_c) + (1 − y_c) log σ(−x_c) ],   C = 13,

where unknown labels (LFW has gender only) are masked out (the mean then runs over the known ones;
with every label known it is exactly ``torch.nn.MultiLabelSoftMarginLoss``). Training uses torch;
inference is numpy only. Decoding respects the conflict groups of Algorithm 1: at most one hair
colour of G1 and never Mustache with No_Beard (G2) — each group takes its most likely valid joint
configuration under the per-attribute probabilities.

The shipped model is ``facedeid/attributes/data/attribute_classifier.npz`` (see PROVENANCE.md there).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..privacy.attributes import ATTRIBUTES, BLOCKS, INDEPENDENT

DEFAULT_PATH = Path(__file__).parent / "data" / "attribute_classifier.npz"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class AttributeClassifier:
    """Standardise → (hidden ReLU layer) → 13 logits. ``w1``/``b1`` is the hidden layer (absent for a
    linear model); ``w2``/``b2`` the output layer."""

    mean: np.ndarray
    std: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w1: np.ndarray | None = None
    b1: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ inference
    def logits(self, X: np.ndarray) -> np.ndarray:
        """(n, 13) logits for feature rows ``X`` (n, FEATURE_DIM)."""
        h = (np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean) / self.std
        if self.w1 is not None:
            h = np.maximum(h @ self.w1 + self.b1, 0.0)
        return h @ self.w2 + self.b2

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """(n, 13) independent per-attribute probabilities σ(logit)."""
        return _sigmoid(self.logits(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 13) 0/1 attributes: independent ones by p > 0.5, each conflict group by its most likely
        valid configuration (so every row is valid for Algorithm 1)."""
        return decode(self.probabilities(X))

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        arrays = {"mean": self.mean, "std": self.std, "w2": self.w2, "b2": self.b2}
        if self.w1 is not None:
            arrays |= {"w1": self.w1, "b1": self.b1}
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        np.savez_compressed(path, attributes=np.array(ATTRIBUTES), meta=np.array(json.dumps(self.meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> "AttributeClassifier":
        z = np.load(path, allow_pickle=False)
        if tuple(str(a) for a in z["attributes"]) != ATTRIBUTES:
            raise ValueError(f"{path}: attribute list differs from facedeid.privacy.attributes.ATTRIBUTES")
        get = lambda k: z[k].astype(np.float64) if k in z.files else None  # noqa: E731
        return cls(mean=get("mean"), std=get("std"), w2=get("w2"), b2=get("b2"), w1=get("w1"), b1=get("b1"),
                   meta=json.loads(str(z["meta"])))


@functools.cache
def load_default() -> AttributeClassifier:
    """The classifier shipped with the package."""
    return AttributeClassifier.load(DEFAULT_PATH)


def decode(prob: np.ndarray) -> np.ndarray:
    """Probabilities (n, 13) → valid 0/1 attributes (independent: p > 0.5; groups: joint argmax)."""
    p = np.clip(np.atleast_2d(prob), 1e-12, 1 - 1e-12)
    out = np.zeros(p.shape, dtype=np.int8)
    for b in BLOCKS:
        cols = b.columns
        if b.name in INDEPENDENT:
            out[:, cols[0]] = p[:, cols[0]] > 0.5
            continue
        ll = np.log(p[:, cols]) @ b.configs.T + np.log(1 - p[:, cols]) @ (1 - b.configs).T  # (n, configs)
        out[:, cols] = b.configs[np.argmax(ll, axis=1)]
    return out


def predict_face(image: np.ndarray, face=None, classifier: AttributeClassifier | None = None) -> dict[str, float]:
    """Attribute probabilities of ``face`` in ``image`` (the main face when ``face`` is None)."""
    from . import features as F

    if face is None:
        face = F.main_face(image)
        if face is None:
            raise ValueError("no face found")
    x = F.face_features(image, face).vector
    p = (classifier or load_default()).probabilities(x)[0]
    return {a: float(v) for a, v in zip(ATTRIBUTES, p)}


# --------------------------------------------------------------------------- training (torch)
def soft_margin_loss(logits, targets, mask=None):
    """Eq. 4.3, the multi-label soft-margin loss, averaged over the known labels of each sample and
    then over samples; ``mask`` (same shape, 1 = known) drops unknown labels (torch tensors)."""
    import torch.nn.functional as nnf

    per = -(targets * nnf.logsigmoid(logits) + (1 - targets) * nnf.logsigmoid(-logits))
    if mask is None:
        return per.mean(dim=1).mean()
    mask = mask.to(per.dtype)
    known = mask.sum(dim=1)
    rows = (per * mask).sum(dim=1) / known.clamp(min=1)
    return rows[known > 0].mean()


def fit(X: np.ndarray, Y: np.ndarray, hidden: int = 0, weight_decay: float = 1e-3, epochs: int = 400, lr: float = 0.01,
        seed: int = 0) -> AttributeClassifier:
    """Fit on features ``X`` (n, d) and labels ``Y`` (n, 13; 1/0, NaN = unknown) by full-batch Adam on
    Eq. 4.3 plus ``weight_decay``·‖W‖² (weights only)."""
    import torch

    torch.manual_seed(seed)
    X = np.asarray(X, dtype=np.float64)
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    xt = torch.tensor((X - mean) / std, dtype=torch.float32)
    mask = torch.tensor(~np.isnan(Y), dtype=torch.float32)
    yt = torch.tensor(np.nan_to_num(Y, nan=0.0), dtype=torch.float32)
    d, c = X.shape[1], Y.shape[1]
    if hidden:
        net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(hidden, c))
    else:
        net = torch.nn.Sequential(torch.nn.Linear(d, c))
    # initialise the output bias at the label log-odds (fast start for rare attributes)
    known = (~np.isnan(Y)).sum(axis=0)
    rate = np.clip(np.where(known > 0, np.nansum(Y, axis=0) / np.maximum(known, 1), 0.5), 0.01, 0.99)
    with torch.no_grad():
        net[-1].bias.copy_(torch.tensor(np.log(rate / (1 - rate)), dtype=torch.float32))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    weights = [m.weight for m in net if isinstance(m, torch.nn.Linear)]
    net.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = soft_margin_loss(net(xt), yt, mask) + weight_decay * sum((w**2).sum() for w in weights)
        loss.backward()
        opt.step()
    net.eval()
    lin = [m for m in net if isinstance(m, torch.nn.Linear)]
    t = lambda p: p.detach().numpy().astype(np.float64)  # noqa: E731
    if hidden:
        return AttributeClassifier(mean, std, w2=t(lin[1].weight).T, b2=t(lin[1].bias), w1=t(lin[0].weight).T, b1=t(lin[0].bias))
    return AttributeClassifier(mean, std, w2=t(lin[0].weight).T, b2=t(lin[0].bias))


def evaluate(clf: AttributeClassifier, X: np.ndarray, Y: np.ndarray) -> dict[str, dict]:
    """Per attribute over the rows where it is known: accuracy of ``clf.predict``, the best constant
    predictor's accuracy on the same rows (``baseline``), balanced accuracy, n and positives."""
    pred = clf.predict(X) if len(X) else np.zeros((0, len(ATTRIBUTES)), dtype=np.int8)
    out = {}
    for i, a in enumerate(ATTRIBUTES):
        known = ~np.isnan(Y[:, i]) if len(Y) else np.zeros(0, dtype=bool)
        y, p = Y[known, i].astype(int), pred[known, i]
        n, pos = int(known.sum()), int(y.sum())
        if n == 0:
            out[a] = {"accuracy": float("nan"), "baseline": float("nan"), "balanced_accuracy": float("nan"), "n": 0, "positives": 0}
            continue
        rates = [np.mean(p[y == v] == v) for v in (0, 1) if (y == v).any()]
        out[a] = {"accuracy": float(np.mean(p == y)), "baseline": max(pos, n - pos) / n,
                  "balanced_accuracy": float(np.mean(rates)), "n": n, "positives": pos}
    return out


def _group_folds(groups: np.ndarray, n_folds: int) -> np.ndarray:
    import hashlib

    return np.array([int.from_bytes(hashlib.sha256(("fold:" + g).encode()).digest()[:4], "big") % n_folds for g in groups])


GRID = ({"hidden": 0, "weight_decay": 3e-4}, {"hidden": 0, "weight_decay": 1e-3}, {"hidden": 0, "weight_decay": 3e-3},
        {"hidden": 64, "weight_decay": 1e-3}, {"hidden": 64, "weight_decay": 3e-3})


def select_model(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, grid=GRID, n_folds: int = 4, log=print) -> tuple[dict, list]:
    """Identity-grouped ``n_folds``-fold cross-validation over ``grid``; the score is the mean over the
    13 attributes of the held-out-fold accuracy. Returns (best settings, all results)."""
    folds = _group_folds(np.asarray(groups), n_folds)
    results = []
    for params in grid:
        accs = []
        for f in range(n_folds):
            clf = fit(X[folds != f], Y[folds != f], **params)
            ev = evaluate(clf, X[folds == f], Y[folds == f])
            accs.append([ev[a]["accuracy"] for a in ATTRIBUTES])
        per = np.nanmean(np.array(accs), axis=0)
        results.append({**params, "cv_mean_accuracy": float(per.mean()), "cv_accuracy": dict(zip(ATTRIBUTES, map(float, per)))})
        log(f"cv {params}: mean accuracy {per.mean():.4f}")
    best = max(results, key=lambda r: r["cv_mean_accuracy"])
    return {k: best[k] for k in grid[0]}, results
