"""`facedeid batch` throughput, local process pool vs Ray, and the driver's memory when streaming a
large manifest through the ledger.

1. Throughput: ``--images`` LFW images from the shared data (cycled when more are asked than exist;
   output names stay unique through a CSV manifest's ``output`` column), run once with the local
   engine and once on a private local Ray cluster, same method, same number of workers, ``--repeat``
   times each in the order local, ray, ray, local (slow drift in the machine's load cancels).
   Reported as items/s (wall time, worker start-up and model loading included; and after the first
   result, i.e. once the cluster and workers are up)
   and as the ratio ray / local of the means.
2. Memory: a synthetic manifest of ``--items`` paths streamed through the ledger with
   ``plan_only`` (no model runs), each size in a fresh process: peak RSS (``ru_maxrss``) and the
   peak of Python allocations (tracemalloc). Bounded memory shows as the same peak for 1,000 and
   100,000 items.

    .venv/bin/python benchmarks/batch_throughput.py [--images 1000] [--items 100000] [--repeat 2] [--out out/bench-batch]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from facedeid.batch import run_batch
from facedeid.batch.engines import default_workers
from facedeid.bench.datasets import data_root, lfw_images

_MEMORY_PROBE = """
import resource, sys, time, tracemalloc
from facedeid.batch import run_batch
from facedeid.methods import registry
registry()  # imports every method module before measuring
trace = sys.argv[3] == "1"
if trace:
    tracemalloc.start()
t0 = time.perf_counter()
s = run_batch(sys.argv[1], sys.argv[2], "pixelate", plan_only=True)
seconds = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1] if trace else 0
print(s.totals["items"], seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, peak)
"""


def lfw_manifest(path: Path, n: int) -> Path:
    """A CSV manifest of ``n`` LFW images (cycled if fewer exist) with unique output names."""
    root = data_root() / "lfw" / "images"
    images = lfw_images()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "output"])
        for i, img in zip(range(n), itertools.cycle(images)):
            w.writerow([img, f"round{i // len(images)}/{img.relative_to(root).as_posix()}"])
    return path


def throughput(manifest: Path, out: Path, engine: str, method: str, workers: int) -> dict[str, Any]:
    """One full batch run into a fresh folder; wall-clock figures."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    s = run_batch(manifest, out, method, engine=engine, workers=workers)
    wall = time.perf_counter() - t0
    steady = s.run.seconds - s.run.first_result_seconds
    return {"engine": engine, "workers": s.workers, "items": s.run.finished, "failed": s.totals["failed"],
            "seconds": wall, "first_result_seconds": s.run.first_result_seconds, "items_per_s": s.run.finished / wall,
            "items_per_s_after_first_result": (s.run.finished - 1) / steady, "worker_s_per_item": s.totals["item_seconds"]}


def synthetic_manifest(path: Path, n: int) -> Path:
    """``n`` distinct paths (no file needs to exist: nothing is run)."""
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f"synthetic/{i // 1000:04d}/img_{i:07d}.jpg\n")
    return path


def memory(work: Path, n: int) -> dict[str, Any]:
    """Peak RSS and tracemalloc peak of a plan-only run over ``n`` items, each in a fresh process."""
    manifest = synthetic_manifest(work / f"manifest_{n}.txt", n)
    row: dict[str, Any] = {"items": n}
    for trace in ("0", "1"):
        out = work / f"plan_{n}_{trace}"
        shutil.rmtree(out, ignore_errors=True)
        res = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(manifest), str(out), trace],
                             capture_output=True, text=True, check=True)
        items, seconds, rss_kib, traced = res.stdout.split()[-4:]
        assert int(items) == n
        if trace == "0":
            row.update(seconds=float(seconds), items_per_s=n / float(seconds), peak_rss_mib=int(rss_kib) / 1024)
        else:
            row["traced_peak_mib"] = int(traced) / 2**20
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--items", type=int, default=100_000, help="synthetic manifest size for the memory figure")
    ap.add_argument("--method", default="pixelate")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--out", default="out/bench-batch")
    ap.add_argument("--repeat", type=int, default=2, help="runs per engine (ordered local, ray, ray, local, ...)")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"memory": [memory(work, n) for n in sorted({1000, args.items})]}
    for m in report["memory"]:
        print(f"plan-only {m['items']:>7} items: {m['seconds']:6.2f} s ({m['items_per_s']:8.0f} items/s), "
              f"peak RSS {m['peak_rss_mib']:.1f} MiB, tracemalloc peak {m['traced_peak_mib']:.2f} MiB")
    if not args.skip_throughput:
        manifest = lfw_manifest(work / "lfw_manifest.csv", args.images)
        order = ["local", "ray", "ray", "local"] * (args.repeat // 2) + ["local", "ray"] * (args.repeat % 2)  # ABBA: drift cancels
        runs = [throughput(manifest, work / f"out_{e}", e, args.method, args.workers) for e in order]
        report["throughput"] = runs
        for r in runs:
            print(f"{r['engine']:<5} {r['items']} images ({r['failed']} failed), {r['workers']} workers: {r['seconds']:.1f} s "
                  f"(first result after {r['first_result_seconds']:.1f} s), {r['items_per_s']:.2f} images/s, "
                  f"{r['items_per_s_after_first_result']:.2f} after it; worker time {r['worker_s_per_item']:.3f} s/image")
        for key in ("items_per_s", "items_per_s_after_first_result"):
            mean = {e: sum(r[key] for r in runs if r["engine"] == e) / order.count(e) for e in ("local", "ray")}
            report[f"ray_over_local_{key}"] = mean["ray"] / mean["local"]
            print(f"throughput ratio ray / local ({key}, mean of {args.repeat}): {mean['ray'] / mean['local']:.3f}")
    (work / "batch_throughput.json").write_text(json.dumps(report, indent=1))
    print(f"report: {work / 'batch_throughput.json'}")


if __name__ == "__main__":
    main()
