"""Video: facedeid against deface (PyPI) on the same clips, in the same run.

For each clip: wall time of both command lines (frames per second and their ratio), whether the
output keeps size, frame count and audio, and faces missed per frame: frames in which a face seen by
deface's detector (CenterFace, threshold 0.2) or by dlib HOG is not covered by a box facedeid
anonymized (taken from facedeid's per-frame JSON report).

    .venv/bin/python benchmarks/video_vs_deface.py [clip names...]
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
CLIPS = ["fr_short_hamilton_clip.mp4", "lp_source_s18.mp4", "faceswapss_test_video_03-2_faces.mp4"]


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
    names = sys.argv[1:] or CLIPS
    root = data_root() / "videos"
    print("| clip | size | frames | facedeid s | deface s | facedeid fps | deface fps | ratio | audio in/facedeid/deface | size+frames kept | frames with a missed face (facedeid) | missed faces |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            src = root / name
            info = probe(src)
            ours, theirs = Path(tmp) / f"ours_{name}", Path(tmp) / f"deface_{name}"
            t_ours = _timed([str(BIN / "facedeid"), "anonymize", str(src), "-o", str(ours), "--method", "blur", "-q"])
            t_def = _timed([str(BIN / "deface"), str(src), "-o", str(theirs), "--keep-audio"])
            o, d = probe(ours), probe(theirs)
            report = json.loads(Path(str(ours) + ".facedeid.json").read_text())
            bad, with_faces, missed = _missed(src, report)
            n = info.frames
            kept = (o.width, o.height, o.frames) == (info.width, info.height, info.frames)
            print(f"| {name} | {info.width}×{info.height} | {n} | {t_ours:.1f} | {t_def:.1f} | {n / t_ours:.1f} | {n / t_def:.1f} | {t_def / t_ours:.2f} "
                  f"| {bool(info.audio)}/{bool(o.audio)}/{bool(d.audio)} | {kept} | {bad}/{with_faces} | {missed} |", flush=True)


if __name__ == "__main__":
    main()
