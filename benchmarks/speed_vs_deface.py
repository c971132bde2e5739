"""Throughput of `facedeid anonymize --method blur` against `deface` (PyPI) on the same inputs.

Inputs (made in a temporary folder from ../shared/data, nothing is copied into the repository):
  * 100 LFW images (250×250), the first of 100 different people;
  * one 1280×720 photo with many faces (group_photos/retinaface_test.jpg resized to 1280×720).
Both tools run as command-line processes (model loading included), one after the other, in the
same run. Recall: faces each tool's detector finds on the annotated PASCAL photos (43 faces).

    .venv/bin/python benchmarks/speed_vs_deface.py [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facedeid.bench.datasets import data_root, pascal_ground_truth
from facedeid.bench.detection import match
from facedeid.faces.detect import detect
from facedeid.faces.types import Box
from facedeid.media.images import read_image

BIN = Path(sys.executable).parent


def _lfw_100(root: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    people = sorted((root / "lfw" / "images").iterdir())[:100]
    for p in people:
        shutil.copy(sorted(p.glob("*.jpg"))[0], dst)


def _crowd_720p(root: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    img = Image.open(root / "group_photos" / "retinaface_test.jpg").convert("RGB").resize((1280, 720), Image.LANCZOS)
    img.save(dst / "crowd_1280x720.jpg", quality=95)


def _timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def _deface_recall() -> tuple[int, int, int]:
    from deface.centerface import CenterFace

    cf = CenterFace()
    found = fp = total = 0
    for path, gt in pascal_ground_truth().items():
        dets, _ = cf(read_image(path).rgb, threshold=0.2)
        h, f = match(gt, [Box(*d[:4]) for d in dets])
        found, fp, total = found + h, fp + f, total + len(gt)
    return found, fp, total


def _our_recall(detector: str) -> tuple[int, int, int]:
    found = fp = total = 0
    for path, gt in pascal_ground_truth().items():
        h, f = match(gt, [x.box for x in detect(read_image(path).rgb, detector)])
        found, fp, total = found + h, fp + f, total + len(gt)
    return found, fp, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="OMP/ORT threads for both tools")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    root = data_root()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = {"100 LFW 250×250": tmp / "lfw", "1 crowd 1280×720": tmp / "crowd"}
        _lfw_100(root, sets["100 LFW 250×250"])
        _crowd_720p(root, sets["1 crowd 1280×720"])
        for k, (label, folder) in enumerate(sets.items()):
            theirs = []
            for r in range(args.repeat):
                work = tmp / f"deface{k}_{r}"
                shutil.copytree(folder, work)
                theirs.append(_timed([str(BIN / "deface"), str(work), "--replacewith", "blur"], env))
            for detector in ("centerface", "union"):
                ours = [
                    _timed([str(BIN / "facedeid"), "anonymize", str(folder), "-o", str(tmp / f"ours{k}_{detector}_{r}"),
                            "--method", "blur", "--detector", detector, "-q"], env)
                    for r in range(args.repeat)
                ]
                rows.append((label, detector, min(ours), min(theirs), len(list(folder.iterdir()))))
    print(f"| input | facedeid detector | facedeid s | deface s | facedeid img/s | deface img/s | speed ratio facedeid/deface |")
    print("|---|---|---|---|---|---|---|")
    for label, det, o, t, n in rows:
        print(f"| {label} | {det} | {o:.2f} | {t:.2f} | {n / o:.1f} | {n / t:.1f} | {t / o:.2f} |")
    d = _deface_recall()
    print(f"\nPASCAL recall (43 annotated faces): deface (CenterFace, thresh 0.2) {d[0]}/{d[2]} ({d[1]} false pos.)", end="")
    for det in ("centerface", "union"):
        o = _our_recall(det)
        print(f"; facedeid {det} {o[0]}/{o[2]} ({o[1]} false pos.)", end="")
    print()


if __name__ == "__main__":
    main()
