"""LFW verification protocol (book Tables 4.1, 5.1, 6.1): the method is applied to the second image
of each pair; identity distance, SDR, TAR/FAR, PSNR and SSIM per recognizer.

The recognizers use the *original* face's landmarks on the anonymized image (the attacker gets the
best possible alignment): a conservative choice for privacy figures.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..faces.detect import DEFAULT_DETECTOR, detect
from ..faces.types import Face
from ..identity.recognizers import Recognizer, distance
from ..media.images import read_image
from ..methods.base import Context
from ..metrics.privacy import Verification, pair_verification, sdr
from ..metrics.quality import psnr, ssim
from ..pipeline import anonymize, resolve_method
from ..privacy.randomness import PrivacyRandom
from .datasets import Pair, lfw_pairs


def main_face(image: np.ndarray, detector: str) -> Face | None:
    """The labelled face of an LFW image: the detected face nearest the image centre."""
    faces = detect(image, detector)
    if not faces:
        return None
    h, w = image.shape[:2]
    return min(faces, key=lambda f: np.hypot(f.box.center[0] - w / 2, f.box.center[1] - h / 2))


@dataclass
class Prepared:
    """Originals of a pair list, decoded once, with their main face and embeddings."""

    images: dict[Path, np.ndarray]
    faces: dict[Path, Face]
    embeddings: dict[str, dict[Path, np.ndarray]] = field(default_factory=dict)


def prepare(pairs: Sequence[Pair], recognizers: Sequence[Recognizer], detector: str = DEFAULT_DETECTOR) -> Prepared:
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    images = {p: read_image(p).rgb for p in paths}
    faces = {p: f for p in paths if (f := main_face(images[p], detector)) is not None}
    prep = Prepared(images, faces)
    for rec in recognizers:
        prep.embeddings[rec.name] = {p: rec.embed(images[p], [faces[p]])[0] for p in faces}
    return prep


@dataclass
class PairFigures:
    method: str
    id_distance: dict[str, float]  # mean distance between each second image and its anonymized version
    sdr: dict[str, float]
    anonymized: dict[str, Verification]
    original: dict[str, Verification]
    psnr: float
    ssim: float
    seconds_per_face: float
    n_pairs: int


def evaluate_pairs(
    method: str, pairs: Sequence[Pair], recognizers: Sequence[Recognizer], prep: Prepared, seed: int | None = None
) -> PairFigures:
    """Run ``method`` on every pair's second image and compute the figures of Tables 4.1/5.1."""
    m = resolve_method(method)
    usable = [p for p in pairs if p.a in prep.faces and p.b in prep.faces]
    seconds, quality = 0.0, []
    anon_emb: dict[str, dict[Path, np.ndarray]] = {r.name: {} for r in recognizers}
    for i, path in enumerate(sorted({p.b for p in usable})):
        img, face = prep.images[path], prep.faces[path]
        t0 = time.perf_counter()
        out = anonymize(img, m, faces=[face], ctx=Context(rng=PrivacyRandom(None if seed is None else seed + i))).image
        seconds += time.perf_counter() - t0
        quality.append((psnr(img, out), ssim(img, out)))
        for rec in recognizers:
            anon_emb[rec.name][path] = rec.embed(out, [face])[0]
    idd, sd, ver, ver0 = {}, {}, {}, {}
    for rec in recognizers:
        e0, e1 = prep.embeddings[rec.name], anon_emb[rec.name]
        own = np.array([distance(e0[p], e1[p], rec.metric)[0] for p in e1])
        idd[rec.name], sd[rec.name] = float(own.mean()), sdr(own, rec.threshold)
        first, second = np.array([e0[p.a] for p in usable]), np.array([e0[p.b] for p in usable])
        anon = np.array([e1[p.b] for p in usable])
        ver[rec.name], ver0[rec.name] = pair_verification(first, second, anon, np.array([p.same for p in usable]), rec.metric, rec.threshold)
    q = np.array(quality)
    finite = q[np.isfinite(q[:, 0]), 0]
    return PairFigures(m.spec(), idd, sd, ver, ver0, float(finite.mean()) if finite.size else float("inf"),
                       float(q[:, 1].mean()), seconds / max(len(q), 1), len(usable))


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    from ..identity.mobilefacenet import MobileFaceNetRecognizer
    from ..identity.recognizers import DlibRecognizer

    ap = argparse.ArgumentParser(description="LFW fold-1 pairs, second image anonymized")
    ap.add_argument("--method", action="append", required=True, help="method spec (repeatable)")
    ap.add_argument("--pairs", type=int, default=200, help="first N pairs of pairs_fold1.txt (its first 300 are matched)")
    ap.add_argument("--research-seed", type=int, default=None)
    args = ap.parse_args(argv)
    all_pairs = lfw_pairs()
    # fold 1 lists 300 matched then 300 mismatched pairs: take N/2 of each so both rates exist
    half = args.pairs // 2
    pairs = all_pairs[:half] + all_pairs[300 : 300 + half]
    recs = [DlibRecognizer(), MobileFaceNetRecognizer()]
    t0 = time.perf_counter()
    prep = prepare(pairs, recs)
    print(f"{len(pairs)} pairs ({half} matched + {half} mismatched), faces found in {len(prep.faces)}/{len(prep.images)} images, prepared in {time.perf_counter() - t0:.0f} s\n")
    print("| method | recognizer | Id-dis | SDR | TAR@τ | FAR@τ | TAR@FAR1% | original TAR@τ | PSNR | SSIM | s/face |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in args.method:
        f = evaluate_pairs(spec, pairs, recs, prep, args.research_seed)
        for r in recs:
            v, v0 = f.anonymized[r.name], f.original[r.name]
            print(f"| {spec} | {r.name} | {f.id_distance[r.name]:.3f} | {f.sdr[r.name]:.3f} | {v.tar:.3f} | {v.far:.3f} | "
                  f"{v.tar_at_far_1:.3f} | {v0.tar:.3f} | {f.psnr:.2f} | {f.ssim:.3f} | {f.seconds_per_face:.3f} |", flush=True)


if __name__ == "__main__":
    main()
