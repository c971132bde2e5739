"""`facedeid batch --engine ray` on a real local Ray cluster (loopback, 2 worker CPUs): the same files and
ledger as the local engine, and a SIGKILLed worker loses no item and duplicates none."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facedeid.batch import run_batch
from facedeid.cli import main
from facedeid.errors import UnsupportedMedia

from .conftest import N_FACES, ledger_rows, output_files

COMPARED = ("key", "src", "status", "outcome", "faces", "attempts", "message", "exit_code")


def test_ray_engine_matches_local_byte_for_byte(ray_cluster, faces_dir, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(buf, format="JPEG")
    (faces_dir / "trunc.jpg").write_bytes(buf.getvalue()[:300])
    local, remote = tmp_path / "local", tmp_path / "ray"
    common = ["--method", "pixelate", "--retries", "2", "-q"]
    assert main(["batch", str(faces_dir), "-o", str(local), "--workers", "2", *common]) == UnsupportedMedia.exit_code
    assert main(["batch", str(faces_dir), "-o", str(remote), "--engine", "ray", *common]) == UnsupportedMedia.exit_code
    files = output_files(remote)
    assert len(files) == N_FACES and files == output_files(local)
    rows = [{c: r[c] for c in COMPARED} for r in ledger_rows(remote)]
    assert rows == [{c: r[c] for c in COMPARED} for r in ledger_rows(local)]
    assert {r["worker"] for r in ledger_rows(remote)} != {r["worker"] for r in ledger_rows(local)}


def _ray_task_workers() -> list[int]:
    """PIDs of this test process's descendants that are Ray workers busy with a batch task."""
    parents, titles = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                titles[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0]
            except (OSError, IndexError, ValueError):
                continue

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 1)
        return False

    return [pid for pid, title in titles.items() if title.startswith(b"ray::run_task") and ours(pid)]


def _busy(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_task")
    except OSError:
        return False


def test_killed_ray_worker_loses_no_item_and_duplicates_none(ray_cluster, faces_dir, tmp_path):
    out, result = tmp_path / "out", {}
    run = threading.Thread(target=lambda: result.update(s=run_batch(faces_dir, out, "pixelate", detector="hog", engine="ray")))
    run.start()
    killed, deadline = None, time.monotonic() + 120
    while killed is None and run.is_alive() and time.monotonic() < deadline:
        for pid in _ray_task_workers():
            if _busy(pid):
                os.kill(pid, signal.SIGKILL)  # a Ray worker of our own cluster, mid-task
                killed = pid
                break
        time.sleep(0.01)
    run.join(timeout=300)
    assert killed is not None and not run.is_alive()
    summary, rows = result["s"], ledger_rows(out)
    assert summary.run.crashes == 1 and summary.totals["done"] == N_FACES
    assert len(rows) == N_FACES and all(r["status"] == "done" for r in rows)  # one done row per item
    assert sorted(r["attempts"] for r in rows) == [1] * (N_FACES - 1) + [2]  # the lost attempt was retried
    assert sorted(output_files(out)) == [r["key"] for r in rows]  # one file per item, no temporary file left
    assert not list(out.rglob(".facedeid-*.part"))


def test_cli_joins_a_running_cluster_by_address(ray_cluster, faces_dir, tmp_path):
    address = ray_cluster.get_runtime_context().gcs_address
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facedeid", "batch", str(faces_dir / "a"), "-o", str(out), "--method", "mask",
           "--engine", "ray", "--address", address, "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "(ray, 2 workers)" in proc.stdout and len(output_files(out)) == N_FACES // 2
    assert ray_cluster.is_initialized()  # the driver left, the cluster stays
