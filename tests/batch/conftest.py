"""Fixtures for the batch tests: a small folder of real LFW faces and a real local Ray cluster."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from facedeid.batch import LEDGER_NAME

N_FACES = 10


@pytest.fixture
def faces_dir(tmp_path: Path, lfw_sample: list[Path]) -> Path:
    """10 LFW images of different people in a small tree (in/a/*, in/b/c/*)."""
    root = tmp_path / "in"
    for i, src in enumerate(lfw_sample[:N_FACES]):
        dst = root / ("a" if i % 2 else "b/c") / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    return root


def ledger_rows(out: Path) -> list[dict[str, Any]]:
    """Every ledger row, by key (read with a separate connection, as a user would)."""
    db = sqlite3.connect(out / LEDGER_NAME)
    try:
        cur = db.execute("SELECT * FROM items ORDER BY key")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]
    finally:
        db.close()


def output_files(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` except the batch's own ``.facedeid-batch*`` files, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".facedeid-batch")}


@pytest.fixture(scope="session")
def ray_cluster():  # type: ignore[no-untyped-def]
    """A real local Ray cluster on loopback with 2 worker CPUs, shared by the Ray tests."""
    import ray  # installed by `make test` (extra [ray]); a missing Ray must fail, not skip
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()
