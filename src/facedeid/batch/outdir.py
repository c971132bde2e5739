"""The batch's own files in the output folder: the ledger, a lock against concurrent runs, the
summary, and the sweep of temporary files left by workers killed while writing.

Every name starts with ``.facedeid-`` so that :func:`pipeline.plan` never takes them as inputs.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import OutputError

LEDGER_NAME = ".facedeid-batch.sqlite"
LOCK_NAME = ".facedeid-batch.lock"
SUMMARY_NAME = ".facedeid-batch-summary.json"
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".facedeid-", ".part"  # media.images.write_atomic's temporary files


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` for one batch run; a second concurrent run is refused."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{out}: another batch run is using this output folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sweep_partials(out: Path) -> int:
    """Delete temporary ``.facedeid-*.part`` files under ``out`` (left by killed workers); returns
    how many. Only safe while no worker writes, i.e. before and after a run under :func:`locked`."""
    removed = 0
    for dirpath, _, filenames in os.walk(out):
        for name in filenames:
            if name.startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed


def remove_outputs(out: Path, keys: Iterator[str]) -> int:
    """Delete the outputs named by ``keys`` (relative to ``out``); returns how many existed."""
    removed = 0
    for key in keys:
        path = out / key
        if path.is_file():
            path.unlink()
            removed += 1
    return removed
