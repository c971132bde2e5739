"""Video: facedeid against deface (PyPI) on the same clips, in the same run.

For each clip: wall time of both command lines (frames per second and their ratio), whether the
output keeps size, frame count and audio, and faces missed per frame: frames in which a face seen by
deface's detector (CenterFace, threshold 0.2) or by dlib HOG is not covered by a box facedeid
anonymized (taken from facedeid's per-frame JSON report).

    .venv/bin/python benchmarks/video_vs_deface.py [--io-only] [clip names...]   (default: every clip of videos.csv)

``--io-only`` skips deface and the missed-face count (their columns then show –).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facedeid.bench.datasets import data_root
from facedeid.faces.detect import detect
from facedeid.faces.types import Box
from facedeid.media.video import probe, read_frames

BIN = Path(sys.executable).parent
def all_clips() -> list[str]:
    """Every clip listed in the shared data's videos.csv."""
    import csv

    with open(data_root() / "videos" / "videos.csv", newline="") as fh:
        return [row["file"] for row in csv.DictReader(fh)]


def _covered(face: Box, boxes: list[Box]) -> bool:
    cx, cy = face.center
    return any(b.x0 <= cx <= b.x1 and b.y0 <= cy <= b.y1 for b in boxes)


def _missed(src: Path, report: dict) -> tuple[int, int, int]:
    """(frames with a face missed, frames with any reference face, reference faces missed)."""
    from deface.centerface import CenterFace

    cf = CenterFace()
    bad = with_faces = missed = 0
    for i, _, rgb in read_frames(src):
        ours = [Box(*b).expanded(0.1) for b in report["per_frame"][i]["boxes"]]
        dets, _ = cf(rgb, threshold=0.2)
        ref = [Box(*d[:4]) for d in dets] + [f.box for f in detect(rgb, "hog")]
        miss = [r for r in ref if not _covered(r, ours)]
        with_faces += bool(ref)
        bad += bool(miss)
        missed += len(miss)
    return bad, with_faces, missed


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    args = sys.argv[1:]
    io_only = "--io-only" in args  # facedeid's output checks only: no deface run, no missed-face count
    names = [a for a in args if a != "--io-only"] or all_clips()
    root = data_root() / "videos"
    print("| clip | size in → facedeid / deface | frames in → facedeid / deface | frame rate in → facedeid / deface | duration s in → facedeid / deface "
          "| audio in → facedeid / deface | rotation in → facedeid | facedeid s | deface s | facedeid fps | deface fps | ratio "
          "| frames with a missed face (facedeid) | missed faces |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            src = root / name
            info = probe(src)
            ours, theirs = Path(tmp) / f"ours_{name}", Path(tmp) / f"deface_{name}"
            t_ours = _timed([str(BIN / "facedeid"), "anonymize", str(src), "-o", str(ours), "--method", "blur", "-q"])
            o = probe(ours)
            if io_only:
                t_def, d, bad, with_faces, missed = float("nan"), None, "–", "–", "–"
            else:
                t_def = _timed([str(BIN / "deface"), str(src), "-o", str(theirs), "--keep-audio"])
                d = probe(theirs)
                report = json.loads(Path(str(ours) + ".facedeid.json").read_text())
                bad, with_faces, missed = _missed(src, report)
            n = info.frames

            def size(v) -> str:
                return f"{v.width}×{v.height}" if v else "–"

            def frames(v) -> str:
                return str(v.frames) if v else "–"

            def fps(v) -> str:
                return "–" if v is None else f"{float(v.fps):.3f}" if v.fps else "?"

            def duration(v) -> str:
                return f"{v.duration_s:.2f}" if v else "–"

            def audio(v) -> str:
                return "–" if v is None else "+".join(v.audio) or "none"

            print(f"| {name} | {size(info)} → {size(o)} / {size(d)} | {n} → {o.frames} / {frames(d)} "
                  f"| {fps(info)} → {fps(o)} / {fps(d)} | {duration(info)} → {duration(o)} / {duration(d)} "
                  f"| {audio(info)} → {audio(o)} / {audio(d)} | {info.rotation} → {o.rotation} "
                  f"| {t_ours:.1f} | {t_def:.1f} | {n / t_ours:.1f} | {n / t_def:.1f} | {t_def / t_ours:.2f} "
                  f"| {bad}/{with_faces} | {missed} |", flush=True)


if __name__ == "__main__":
    main()
