"""LFW verification benchmark of the MobileFaceNet evaluation recognizer.

Default: all 600 pairs of View-2 fold 1 (``shared/data/lfw/pairs_fold1.txt``): ROC AUC, TAR at
FAR 1 %, best accuracy, accuracy at the recognizer's threshold, run time.

``--calibrate``: choose the threshold on LFW people that do NOT occur in the pairs file (every
same-person pair and every different-person pair among them), maximising balanced accuracy.

Faces: dlib HOG detector (upsample 1), largest detection, dlib 5-point landmarks; when nothing is
found a fixed central box of the 250x250 deep-funneled image is used (counted as a miss).

    PYTHONPATH=src .venv/bin/python benchmarks/mobilefacenet_lfw.py [--calibrate] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import dlib
import numpy as np

from facedeid.faces.landmarks import landmarks5
from facedeid.faces.types import Box, Face
from facedeid.identity.mobilefacenet import MobileFaceNetRecognizer

Pair = tuple[str, str, bool]  # two image paths relative to lfw/, same person?
_FALLBACK_BOX = Box(75.0, 75.0, 175.0, 175.0)  # deep-funneled LFW faces sit near the centre


def data_dir() -> Path:
    """``$FACEDEID_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("FACEDEID_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _img(name: str, idx: int | str) -> str:
    return f"images/{name}/{name}_{int(idx):04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """LFW ``pairs.txt`` format: ``name i j`` (same) or ``name1 i name2 j`` (different)."""
    pairs: list[Pair] = []
    for line in path.read_text().splitlines()[1:]:
        f = line.split()
        if len(f) == 3:
            pairs.append((_img(f[0], f[1]), _img(f[0], f[2]), True))
        elif len(f) == 4:
            pairs.append((_img(f[0], f[1]), _img(f[2], f[3]), False))
    return pairs


def largest_face(detector: dlib.fhog_object_detector, rgb: np.ndarray) -> tuple[Face, bool]:
    """The largest HOG detection (upsample 1) as a :class:`Face`; ``False`` if the fallback box was used."""
    rects = list(detector(rgb, 1))
    if rects:
        r = max(rects, key=lambda r: r.width() * r.height())
        box, found = Box(r.left(), r.top(), r.right(), r.bottom()), True
    else:
        box, found = _FALLBACK_BOX, False
    return Face(box=box, score=1.0, landmarks5=landmarks5(rgb, box), detector="hog"), found


def embed_images(lfw: Path, paths: list[str], rec: MobileFaceNetRecognizer) -> tuple[dict[str, np.ndarray], int]:
    """Embedding of the largest face of each image; also the number of detection misses."""
    detector = dlib.get_frontal_face_detector()
    out: dict[str, np.ndarray] = {}
    misses = 0
    for p in paths:
        bgr = cv2.imread(str(lfw / p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(lfw / p)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        face, found = largest_face(detector, rgb)
        misses += not found
        out[p] = rec.embed(rgb, [face])[0]
    return out, misses


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half): Mann-Whitney U."""
    scores = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0  # average 1-based rank of each tied group
    u = avg_rank[inverse[: len(pos)]].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def tar_at_far(pos: np.ndarray, neg: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, similarity threshold) with at most ``far`` of negatives scoring strictly above it."""
    k = int(np.floor(far * len(neg)))
    thr = float(np.sort(neg)[::-1][k]) if k < len(neg) else float(neg.min())
    return float((pos > thr).mean()), thr


def best_threshold(pos: np.ndarray, neg: np.ndarray, balanced: bool) -> tuple[float, float]:
    """(similarity threshold, accuracy) maximising accuracy, or balanced accuracy if asked.

    The threshold is the midpoint between the two scores around the best cut (``sim > thr`` = same).
    """
    scores = np.sort(np.unique(np.concatenate([pos, neg])))
    cuts = np.concatenate([[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]])
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    tar = 1 - np.searchsorted(pos_s, cuts, side="right") / len(pos)
    tnr = np.searchsorted(neg_s, cuts, side="right") / len(neg)
    acc = (tar + tnr) / 2 if balanced else (tar * len(pos) + tnr * len(neg)) / (len(pos) + len(neg))
    i = int(np.argmax(acc))
    return float(cuts[i]), float(acc[i])


def evaluate(pos: np.ndarray, neg: np.ndarray, dist_threshold: float) -> dict[str, float]:
    """Verification metrics from same-person (``pos``) and different-person (``neg``) similarities."""
    tar1, thr1 = tar_at_far(pos, neg, 0.01)
    best_sim, best_acc = best_threshold(pos, neg, balanced=False)
    sim_thr = 1.0 - dist_threshold
    acc = ((pos > sim_thr).sum() + (neg <= sim_thr).sum()) / (len(pos) + len(neg))
    return {
        "n_same": len(pos), "n_diff": len(neg),
        "mean_sim_same": float(pos.mean()), "mean_sim_diff": float(neg.mean()),
        "roc_auc": roc_auc(pos, neg),
        "tar_at_far_1pct": tar1, "dist_threshold_at_far_1pct": 1.0 - thr1,
        "best_accuracy": best_acc, "best_accuracy_dist_threshold": 1.0 - best_sim,
        "recognizer_threshold": dist_threshold, "accuracy_at_recognizer_threshold": float(acc),
        "tar_at_recognizer_threshold": float((pos > sim_thr).mean()),
        "far_at_recognizer_threshold": float((neg > sim_thr).mean()),
    }


def run_pairs(lfw: Path, pairs: list[Pair], rec: MobileFaceNetRecognizer) -> dict[str, float]:
    """Embed every image once, score every pair, compute the metrics."""
    emb, misses = embed_images(lfw, sorted({p for a, b, _ in pairs for p in (a, b)}), rec)
    sims = np.array([float(emb[a] @ emb[b]) for a, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    res = evaluate(sims[same], sims[~same], rec.threshold)
    res["images"], res["detection_misses"] = len(emb), misses
    return res


def calibration_images(lfw: Path, pairs: list[Pair]) -> dict[str, list[str]]:
    """Images of every LFW person here with >= 2 images and absent from ``pairs``."""
    used = {Path(p).parent.name for a, b, _ in pairs for p in (a, b)}
    people: dict[str, list[str]] = {}
    for d in sorted((lfw / "images").iterdir()):
        imgs = sorted(f"images/{d.name}/{f.name}" for f in d.glob("*.jpg"))
        if d.name not in used and len(imgs) >= 2:
            people[d.name] = imgs
    return people


def run_calibration(lfw: Path, pairs: list[Pair], rec: MobileFaceNetRecognizer) -> dict[str, float]:
    """All same/different pairs among people disjoint from ``pairs``; balanced-accuracy threshold."""
    people = calibration_images(lfw, pairs)
    paths = [p for imgs in people.values() for p in imgs]
    emb, misses = embed_images(lfw, paths, rec)
    x = np.stack([emb[p] for p in paths]).astype(np.float64)
    ids = np.array([i for i, imgs in enumerate(people.values()) for _ in imgs])
    sim = x @ x.T
    iu = np.triu_indices(len(paths), k=1)
    same = ids[iu[0]] == ids[iu[1]]
    pos, neg = sim[iu][same], sim[iu][~same]
    sim_thr, bal_acc = best_threshold(pos, neg, balanced=True)
    res = evaluate(pos, neg, 1.0 - sim_thr)
    res.update(people=len(people), images=len(paths), detection_misses=misses,
               balanced_accuracy=bal_acc, calibrated_dist_threshold=1.0 - sim_thr)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="shared/data folder (default: $FACEDEID_DATA or ../shared/data)"
    )
    ap.add_argument("--pairs", default="pairs_fold1.txt", help="pairs file inside lfw/")
    ap.add_argument("--calibrate", action="store_true", help="calibrate the threshold on people not in the pairs")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    lfw = (args.data or data_dir()) / "lfw"
    pairs = read_pairs(lfw / args.pairs)
    rec = MobileFaceNetRecognizer()
    t0 = time.perf_counter()
    res = run_calibration(lfw, pairs, rec) if args.calibrate else run_pairs(lfw, pairs, rec)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
