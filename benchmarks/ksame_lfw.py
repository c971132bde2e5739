"""k-Same family on LFW (book Ch. 3.1.2): privacy and utility for k = 2, 5, 10.

One image each of ≥ 100 LFW people (deep-funneled, ../shared/data) forms the set; every variant
(ksame-pixel, ksame-eigen, ksame-select by expression, ksame-m) anonymizes it at every k. Reported:

* re-identification rate: rank-1 identification of each output among the originals, with dlib (the
  recognizer k-Same's identity matching also uses) and MobileFaceNet (evaluation only), vs 1/k;
* SDR: share of outputs whose dlib distance to their own original exceeds 0.6 (Eq. 3.2);
* FDR: share of outputs where detect() ('hog', 'centerface') still finds the face (IoU ≥ 0.3);
* PSNR and SSIM (whole image, Ch. 3.3.2); mean distance of the 68 landmarks (original vs output,
  predicted in the original face box), in pixels;
* seconds for the whole set (faces given; the set's dlib embeddings, used for identity matching,
  are computed once beforehand and reported separately, as is detection).

Writes ``results.md``, ``results.json`` and ``contact_sheet.png`` (one row per variant and k:
original | anonymized for 12 faces) under ``--out``. Evaluation runs in a process pool.

    .venv/bin/python benchmarks/ksame_lfw.py [--people 100] [--k 2 5 10] [--out out/bench/ksame]
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from facedeid.bench.datasets import data_root
from facedeid.bench.detection import match
from facedeid.bench.report import contact_sheet
from facedeid.faces.detect import detect
from facedeid.faces.landmarks import landmarks68
from facedeid.faces.types import Box, Face
from facedeid.identity.recognizers import DlibRecognizer, distance
from facedeid.media.images import read_image, write_atomic
from facedeid.methods.ksame import DLIB_KEY
from facedeid.metrics.privacy import sdr
from facedeid.metrics.quality import psnr, ssim
from facedeid.metrics.utility import landmark_distances
from facedeid.set_pipeline import anonymize_set

VARIANTS = ("ksame-pixel", "ksame-eigen", "ksame-select", "ksame-m")
FDR_DETECTORS = ("hog", "centerface")
SHEET_FACES = 12


# --------------------------------------------------------------------------- the set
def lfw_set(n_people: int) -> tuple[list[Path], list[np.ndarray], list[Face]]:
    """First image of ``n_people`` LFW people spread over the alphabet, with its largest face."""
    people = sorted((data_root() / "lfw" / "images").iterdir())
    step = max(1, len(people) // (n_people + 5))
    paths, images, faces = [], [], []
    for person in people[::step]:
        if len(paths) == n_people:
            break
        path = sorted(person.glob("*.jpg"))[0]
        img = read_image(path).rgb
        found = detect(img, "centerface", with_68=True)
        if found:
            paths.append(path), images.append(img), faces.append(max(found, key=lambda f: f.box.area))
    return paths, images, faces


# --------------------------------------------------------------------------- per-image evaluation (workers)
_W: dict[str, Any] = {}


def _init_worker() -> None:
    from facedeid.identity.mobilefacenet import MobileFaceNetRecognizer

    _W["dlib"], _W["mfn"] = DlibRecognizer(), MobileFaceNetRecognizer(num_threads=1)


def _embed(img: np.ndarray, face: Face) -> dict[str, np.ndarray]:
    return {"dlib": _W["dlib"].embed(img, [face])[0], "mfn": _W["mfn"].embed(img, [face])[0]}


def _evaluate(job: tuple[np.ndarray, np.ndarray, Face]) -> dict[str, Any]:
    """Embeddings, detection, quality and landmark shift of one output (original face geometry)."""
    orig, out, face = job
    row: dict[str, Any] = _embed(out, face)
    for det in FDR_DETECTORS:
        row[f"fdr_{det}"] = match([face.box], [f.box for f in detect(out, det)])[0] == 1
    row["psnr"], row["ssim"] = psnr(orig, out), ssim(orig, out)
    row["landmarks"] = landmark_distances(face.landmarks68, landmarks68(out, face.box))["all"]
    return row


def _embed_original(job: tuple[np.ndarray, Face]) -> dict[str, np.ndarray]:
    return _embed(*job)


# --------------------------------------------------------------------------- figures
def rank1(probes: np.ndarray, gallery: np.ndarray, metric: str) -> float:
    """Share of probes whose closest gallery entry is their own original (same index)."""
    d = np.stack([distance(np.repeat(p[None], len(gallery), 0), gallery, metric) for p in probes])
    return float(np.mean(d.argmin(1) == np.arange(len(probes))))


def figures(rows: Sequence[dict[str, Any]], gallery: dict[str, np.ndarray]) -> dict[str, float]:
    dlib_p = np.stack([r["dlib"] for r in rows])
    mfn_p = np.stack([r["mfn"] for r in rows])
    own = distance(dlib_p, gallery["dlib"], "euclidean")
    return {
        "reid_dlib": rank1(dlib_p, gallery["dlib"], "euclidean"),
        "reid_mfn": rank1(mfn_p, gallery["mfn"], "cosine"),
        "sdr": sdr(own, DlibRecognizer.threshold),
        **{f"fdr_{d}": float(np.mean([r[f"fdr_{d}"] for r in rows])) for d in FDR_DETECTORS},
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "landmarks_px": float(np.mean([r["landmarks"] for r in rows])),
    }


def face_crop(img: np.ndarray, box: Box) -> np.ndarray:
    """Square crop 1.6× the face box around its centre (padded at the border)."""
    cx, cy = box.center
    half = 0.8 * max(box.width, box.height)
    x0, y0 = int(round(cx - half)), int(round(cy - half))
    side = int(round(2 * half))
    pad = side
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side])


COLUMNS = [("variant", "variant"), ("k", "k"), ("one_over_k", "1/k"), ("people", "people"), ("reid_dlib", "re-id dlib"),
           ("reid_mfn", "re-id MobileFaceNet"), ("sdr", "SDR"), ("fdr_hog", "FDR hog"), ("fdr_centerface", "FDR centerface"),
           ("psnr", "PSNR"), ("ssim", "SSIM"), ("landmarks_px", "landmarks px"), ("seconds", "s (set)")]


def table(rows: Sequence[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(t for _, t in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r[k]) for k, _ in COLUMNS) + " |" for r in rows])


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 5, 10])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="out/bench/ksame")
    args = ap.parse_args(argv)
    out = Path(args.out)

    t = time.perf_counter()
    paths, images, faces = lfw_set(args.people)
    t_detect = time.perf_counter() - t
    print(f"{len(faces)} LFW people, detection + 68 landmarks {t_detect:.1f} s", flush=True)
    rows: list[dict[str, Any]] = []
    samples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    spawn = multiprocessing.get_context("spawn")  # fresh workers: no forked model sessions
    with ProcessPoolExecutor(args.workers, mp_context=spawn, initializer=_init_worker) as pool:
        t = time.perf_counter()
        orig = list(pool.map(_embed_original, zip(images, faces), chunksize=4))
        t_embed = time.perf_counter() - t
        gallery = {name: np.stack([o[name] for o in orig]) for name in ("dlib", "mfn")}
        faces = [dataclasses.replace(f, extra={DLIB_KEY: o["dlib"]}) for f, o in zip(faces, orig)]
        print(f"originals embedded (dlib + MobileFaceNet) in {t_embed:.1f} s", flush=True)
        for variant in args.variants:
            for k in args.k:
                t = time.perf_counter()
                res = anonymize_set(images, f"{variant}:k={k}", faces=[[f] for f in faces])
                seconds = time.perf_counter() - t
                outs = [r.image for r in res.results]
                evals = list(pool.map(_evaluate, zip(images, outs, faces), chunksize=4))
                row = {"variant": variant, "k": k, "one_over_k": 1 / k, "people": res.report["ksame"]["people"],
                       **figures(evals, gallery), "seconds": seconds}
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
                samples[f"{variant} k={k}"] = [(face_crop(images[i], faces[i].box), face_crop(outs[i], faces[i].box))
                                                for i in range(min(SHEET_FACES, len(faces)))]
    md = table(rows)
    note = (f"\n\n{len(faces)} LFW people, one image each. Detection + 68 landmarks for the set: {t_detect:.1f} s; dlib "
            f"embeddings of the set (identity matching; computed once, not in 's (set)'): part of {t_embed:.1f} s "
            "(dlib + MobileFaceNet). Contact sheet rows: " + ", ".join(samples) + ".\n")
    write_atomic(out / "results.md", (md + note).encode())
    write_atomic(out / "results.json", json.dumps({"rows": rows, "people": len(faces), "detect_s": t_detect,
                                                   "embed_s": t_embed}, indent=1).encode())
    buf = io.BytesIO()
    Image.fromarray(contact_sheet(samples, size=96)).save(buf, format="PNG")
    write_atomic(out / "contact_sheet.png", buf.getvalue())
    print("\n" + md + note)
    print(f"written: {out / 'results.md'}  {out / 'results.json'}  {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
