"""Closed-set identification and the adaptive attacker (McPherson et al. 2016).

Identification (book protocol): anonymized probes are matched against a gallery of *clean* photos
of the same people (rank-1 by recognizer distance). The adaptive attacker knows the method and its
parameters: it anonymizes a labelled gallery itself, learns from it — a nearest-class-mean
classifier on recognizer embeddings of the anonymized gallery, and OpenCV's LBPH recognizer on
aligned grey pixels — and identifies anonymized probes (other photos of the same people).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..identity.recognizers import distance


@dataclass(frozen=True)
class Identification:
    rank1: float
    chance: float
    probes: int
    identities: int


def nearest_mean_rank1(gallery: np.ndarray, gallery_ids: list[str], probes: np.ndarray, probe_ids: list[str], metric: str) -> Identification:
    """Rank-1 accuracy of a nearest-class-mean classifier (class means of L2-normalised embeddings
    for cosine metrics, plain means otherwise)."""
    ids = sorted(set(gallery_ids))
    g = np.asarray(gallery, dtype=np.float64)
    if metric == "cosine":
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    labels = np.array(gallery_ids)
    means = np.stack([g[labels == i].mean(axis=0) for i in ids])
    hits = 0
    for emb, true in zip(probes, probe_ids):
        d = distance(np.repeat(emb[None], len(ids), axis=0), means, metric)
        hits += ids[int(np.argmin(d))] == true
    return Identification(hits / max(len(probe_ids), 1), 1.0 / max(len(ids), 1), len(probe_ids), len(ids))


def nearest_neighbour_rank1(gallery: np.ndarray, gallery_ids: list[str], probes: np.ndarray, probe_ids: list[str], metric: str) -> Identification:
    """Rank-1 accuracy of 1-nearest-neighbour matching against every gallery image."""
    hits = 0
    for emb, true in zip(probes, probe_ids):
        d = distance(np.repeat(emb[None], len(gallery), axis=0), gallery, metric)
        hits += gallery_ids[int(np.argmin(d))] == true
    n_ids = len(set(gallery_ids))
    return Identification(hits / max(len(probe_ids), 1), 1.0 / max(n_ids, 1), len(probe_ids), n_ids)


def lbph_rank1(gallery: list[np.ndarray], gallery_ids: list[str], probes: list[np.ndarray], probe_ids: list[str]) -> Identification:
    """Rank-1 accuracy of OpenCV's LBPH recognizer trained on grey aligned crops of the gallery."""
    ids = sorted(set(gallery_ids))
    index = {name: i for i, name in enumerate(ids)}
    rec = cv2.face.LBPHFaceRecognizer_create(radius=1, neighbors=8, grid_x=8, grid_y=8)
    rec.train(list(gallery), np.array([index[i] for i in gallery_ids], dtype=np.int32))
    hits = sum(rec.predict(p)[0] == index[t] for p, t in zip(probes, probe_ids))
    return Identification(hits / max(len(probes), 1), 1.0 / max(len(ids), 1), len(probes), len(ids))
