"""The recognizer's identity space: where the password rotation of ``identity-password`` happens.

dlib's 128-D descriptors of real faces fill a low-dimensional part of R¹²⁸ (on the build set the
first 12 principal directions carry 52 % of the variance, 64 carry 97 %, the last 43 carry none).
:class:`RecognizerSpace` stores the mean μ, the first ``k`` principal directions V (128 × k) and
their standard deviations s, so that

    w(e) = Vᵀ(e − μ) / s          (whitened identity coordinates, k-D)
    e(w; r) = μ + V(s ⊙ w) + r    (r = the part of e outside the k directions, kept as it is)

A rotation of w by the book's Eq. 6.16–6.20 is then a rotation *within the spread of real people*:
its result is as plausible a descriptor as the input. Built by :func:`build` from the shared data's
identity-labelled photos (the LFW people of View-2 fold 1 held out), shipped as
``model/data/recognizer_space.npz``; provenance in ``model/data/PROVENANCE.md``.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

SPACE_FILE = Path(__file__).resolve().parent.parent / "model" / "data" / "recognizer_space.npz"
DEFAULT_K = 12


@dataclass(frozen=True)
class RecognizerSpace:
    mean: np.ndarray  # (128,)
    basis: np.ndarray  # (128, k) orthonormal columns
    std: np.ndarray  # (k,)

    @property
    def k(self) -> int:
        return int(self.std.size)

    def whiten(self, e: np.ndarray) -> np.ndarray:
        """w(e) = Vᵀ(e − μ)/s."""
        return ((np.asarray(e, dtype=np.float64) - self.mean) @ self.basis) / self.std

    def residual(self, e: np.ndarray) -> np.ndarray:
        """The part of e − μ outside the k directions."""
        c = np.asarray(e, dtype=np.float64) - self.mean
        return c - (c @ self.basis) @ self.basis.T

    def descriptor(self, w: np.ndarray, like: np.ndarray) -> np.ndarray:
        """e(w; r) with r the residual of the descriptor ``like``."""
        return self.mean + (np.asarray(w, dtype=np.float64) * self.std) @ self.basis.T + self.residual(like)

    def moved(self, e: np.ndarray, change: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The descriptor e with its whitened coordinates mapped by ``change`` (residual kept)."""
        return self.descriptor(change(self.whiten(e)), e)

    def save(self, path: str | Path) -> None:
        np.savez(path, mean=self.mean.astype(np.float32), basis=self.basis.astype(np.float32), std=self.std.astype(np.float32))

    @classmethod
    def load(cls, path: str | Path = SPACE_FILE) -> "RecognizerSpace":
        z = np.load(path, allow_pickle=False)
        return cls(*(np.asarray(z[k], dtype=np.float64) for k in ("mean", "basis", "std")))


@functools.lru_cache(maxsize=1)
def load_space() -> RecognizerSpace:
    """The shipped space (cached per process)."""
    return RecognizerSpace.load(SPACE_FILE)


def fit_space(descriptors: np.ndarray, k: int = DEFAULT_K) -> RecognizerSpace:
    """PCA of the descriptors: mean, the first k principal directions and their standard deviations."""
    e = np.asarray(descriptors, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] <= k:
        raise ValueError(f"need more than k={k} descriptors, got {e.shape}")
    mean = e.mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov((e - mean).T))
    order = np.argsort(vals)[::-1][:k]
    return RecognizerSpace(mean, vecs[:, order], np.sqrt(vals[order]))


def build(data: Path | None = None, out: Path | None = None, k: int = DEFAULT_K, log=print) -> RecognizerSpace:
    """Descriptors (PyTorch port of dlib, one HOG face per photo) of every identity-labelled colour
    photo of the shared data except the held-out LFW people of fold 1; fit and save the space."""
    from ..bench.datasets import data_root, fold1_people, identities
    from ..faces.detect import detect
    from ..media.images import decode_image
    from .torch_dlib import TorchDlibRecognizer

    root = data or data_root()
    held = fold1_people(root)
    rows = [(p, i) for p, i in identities(root) if i not in held and p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    rec = TorchDlibRecognizer()
    t0, descs, people = time.perf_counter(), [], set()
    for path, person in rows:
        try:
            rgb = decode_image(path.read_bytes(), str(path)).rgb
        except Exception:  # noqa: BLE001 - an unreadable photo is skipped, as in the model build
            continue
        faces = detect(rgb, "hog")
        if len(faces) == 1:
            descs.append(rec.embed(rgb, faces)[0])
            people.add(person)
    space = fit_space(np.asarray(descs), k)
    target = Path(out) if out else SPACE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    space.save(target)
    seconds = time.perf_counter() - t0
    log(f"recognizer space: {len(descs)} descriptors of {len(people)} people, k={k}, {seconds:.0f} s -> {target}")
    return space
