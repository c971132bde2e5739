"""Privacy metrics (book Ch. 3.3.1, Eq. 3.1–3.2): identity distance, SDR, verification rates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sdr(distances: np.ndarray, threshold: float) -> float:
    """Successful de-identification rate, SDR = 1 − mean f_ver (Eq. 3.2), where f_ver = 1 when the
    recognizer still verifies the pair (distance ≤ τ)."""
    d = np.asarray(distances, dtype=np.float64)
    return float(np.mean(d > threshold)) if d.size else float("nan")


@dataclass(frozen=True)
class Verification:
    """Verification figures at the recognizer's threshold τ and at fixed false-accept rates."""

    tar: float  # true-accept rate at τ (matched pairs with distance ≤ τ)
    far: float  # false-accept rate at τ (mismatched pairs with distance ≤ τ)
    tar_at_far_1: float  # TAR at FAR = 1 %
    tar_at_far_01: float  # TAR at FAR = 0.1 %
    eer: float  # equal error rate
    n_same: int
    n_diff: int


def _tar_at_far(same: np.ndarray, diff: np.ndarray, far: float) -> float:
    """TAR at the largest threshold whose FAR does not exceed ``far``."""
    if diff.size == 0:
        return float("nan")
    k = int(np.floor(far * diff.size))  # number of impostor pairs allowed below the threshold
    thr = np.sort(diff)[k] if k < diff.size else np.inf  # accept d < thr
    return float(np.mean(same < thr))


def _eer(same: np.ndarray, diff: np.ndarray) -> float:
    thr = np.unique(np.concatenate([same, diff]))
    frr = np.array([np.mean(same > t) for t in thr])
    far = np.array([np.mean(diff <= t) for t in thr])
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)


def pair_verification(
    first: np.ndarray, second: np.ndarray, second_anonymized: np.ndarray, same: np.ndarray, metric: str, threshold: float
) -> tuple[Verification, Verification]:
    """Verification of pairs whose *second* image is anonymized (the protocol of Tables 4.1/5.1):
    embeddings (n, d) of the first images, of the original and of the anonymized second images, and
    which pairs are matched. Returns (anonymized, original) figures at τ = ``threshold``."""
    from ..identity.recognizers import distance

    same = np.asarray(same, dtype=bool)
    if not len(same):
        empty = verification(np.array([]), np.array([]), threshold)
        return empty, empty
    d_anon = distance(first, second_anonymized, metric)
    d_orig = distance(first, second, metric)
    return (verification(d_anon[same], d_anon[~same], threshold), verification(d_orig[same], d_orig[~same], threshold))


def verification(same: np.ndarray, diff: np.ndarray, threshold: float) -> Verification:
    """Verification on matched (``same``) and mismatched (``diff``) pair distances."""
    same = np.asarray(same, dtype=np.float64)
    diff = np.asarray(diff, dtype=np.float64)
    return Verification(
        tar=float(np.mean(same <= threshold)) if same.size else float("nan"),
        far=float(np.mean(diff <= threshold)) if diff.size else float("nan"),
        tar_at_far_1=_tar_at_far(same, diff, 0.01),
        tar_at_far_01=_tar_at_far(same, diff, 0.001),
        eer=_eer(same, diff) if same.size and diff.size else float("nan"),
        n_same=int(same.size),
        n_diff=int(diff.size),
    )
