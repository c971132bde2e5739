"""The job ledger: one SQLite file (WAL mode) in the output folder, one row per item.

Only the driver process writes it; workers never touch it. Schema:

* ``meta(key, value)`` — ``schema`` and the job fingerprint (``method`` spec with every parameter,
  ``detector``, ``on_no_face``). A run with another fingerprint is refused unless it resets.
* ``items`` — ``key`` (output path relative to the output folder, primary key), ``src``,
  ``status`` (``pending`` → ``running`` → ``done`` | ``failed``), ``outcome`` (``ok`` / ``no-face``
  for done items), ``attempts`` (finished attempts, crashes included), ``faces``, ``message`` (the
  last error or the no-face note, one line), ``exit_code``, ``seconds`` and ``worker`` (``host:pid``)
  of the last attempt, ``updated`` (Unix time) and the optional ``--evaluate`` figures ``ssim``,
  ``psnr``, ``id_distance``.

Retry policy: an item is run while it is not done and ``attempts < retries``; every finished
attempt counts (errors and attributable worker crashes alike), so ``retries`` bounds the work per
item across runs. ``failed`` means the budget ran out; a later run with a larger ``--retries``
tries it again. An interrupted run's ``running`` rows go back to ``pending`` uncounted.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import BadArguments
from .manifest import Item
from .worker import Outcome

SCHEMA_VERSION = "1"
MAX_FAILURES_LISTED = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    src TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    outcome TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    faces INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    exit_code INTEGER NOT NULL DEFAULT 0,
    seconds REAL,
    worker TEXT NOT NULL DEFAULT '',
    updated REAL,
    ssim REAL,
    psnr REAL,
    id_distance REAL
);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
"""


def describe_fingerprint(fp: dict[str, str]) -> str:
    return ", ".join(f"{k} {fp.get(k, '?')}" for k in ("method", "detector", "on_no_face"))


class Ledger:
    """Per-item status of one output folder's batch job (see module doc)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ fingerprint
    def fingerprint(self) -> dict[str, str]:
        """The stored job settings (empty for a new ledger)."""
        return {k: v for k, v in self.db.execute("SELECT key, value FROM meta WHERE key != 'schema'")}

    def bind(self, fingerprint: dict[str, str]) -> None:
        """Tie the ledger to these job settings; refuse (one line) if it holds another job's items."""
        rows = dict(self.db.execute("SELECT key, value FROM meta"))
        if rows.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise BadArguments(f"{self.path}: ledger schema {rows['schema']} is not {SCHEMA_VERSION}: rerun with --reset")
        old = self.fingerprint()
        if old and old != fingerprint:
            raise BadArguments(
                f"{self.path.parent}: holds results of {describe_fingerprint(old)}; refusing to mix them with "
                f"{describe_fingerprint(fingerprint)} (rerun with the same settings, or --reset to start over)")
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("schema", SCHEMA_VERSION), *fingerprint.items()])

    def done_keys(self) -> Iterator[str]:
        """Keys of items whose output was written (streamed)."""
        for (key,) in self.db.execute("SELECT key FROM items WHERE status = 'done'"):
            yield key

    def clear(self) -> None:
        """Forget every item and the fingerprint."""
        with self._tx():
            self.db.execute("DELETE FROM items")
            self.db.execute("DELETE FROM meta")

    # ------------------------------------------------------------------ items
    def register(self, items: Sequence[Item]) -> None:
        """Add items not seen before as ``pending`` (known items keep their state)."""
        with self._tx():
            self.db.executemany("INSERT OR IGNORE INTO items (key, src) VALUES (?, ?)", [(i.key, i.src) for i in items])

    def eligible(self, items: Sequence[Item], retries: int) -> list[Item]:
        """The items (in the given order) still to run: not done and fewer than ``retries`` attempts."""
        if not items:
            return []
        marks = ",".join("?" * len(items))
        todo = {k for (k,) in self.db.execute(
            f"SELECT key FROM items WHERE key IN ({marks}) AND status != 'done' AND attempts < ?",
            [*(i.key for i in items), retries])}
        return [i for i in items if i.key in todo]

    def mark_running(self, key: str) -> None:
        self.db.execute("UPDATE items SET status = 'running', updated = ? WHERE key = ?", (time.time(), key))

    def requeue(self, key: str) -> None:
        """Back to ``pending`` without counting an attempt (the attempt's fate is unknown)."""
        self.db.execute("UPDATE items SET status = 'pending' WHERE key = ? AND status = 'running'", (key,))

    def requeue_running(self) -> int:
        """Every ``running`` row back to ``pending`` (after an interrupted run); returns how many."""
        return self.db.execute("UPDATE items SET status = 'pending' WHERE status = 'running'").rowcount

    def record(self, o: Outcome, retries: int) -> str:
        """Store one finished attempt; returns the item's new status (``pending`` = retry it)."""
        self.db.execute(
            """UPDATE items SET attempts = attempts + 1,
                   status = CASE WHEN :ok THEN 'done' WHEN attempts + 1 >= :retries THEN 'failed' ELSE 'pending' END,
                   outcome = CASE WHEN :ok THEN :status ELSE '' END,
                   faces = :faces, message = :message, exit_code = :exit_code, seconds = :seconds,
                   worker = :worker, updated = :now, ssim = :ssim, psnr = :psnr, id_distance = :id_distance
               WHERE key = :key""",
            {"ok": o.succeeded, "retries": retries, "status": o.status, "faces": o.faces, "message": o.message,
             "exit_code": o.exit_code, "seconds": o.seconds, "worker": o.worker, "now": time.time(),
             "ssim": o.ssim, "psnr": o.psnr, "id_distance": o.id_distance, "key": o.key})
        row = self.db.execute("SELECT status FROM items WHERE key = ?", (o.key,)).fetchone()
        return str(row[0]) if row else "failed"

    # ------------------------------------------------------------------ reporting
    def totals(self) -> dict[str, Any]:
        """Counts over every item of the ledger (aggregated in SQLite: bounded memory)."""
        row = self.db.execute(
            """SELECT COUNT(*), TOTAL(status = 'done'), TOTAL(outcome = 'ok'), TOTAL(outcome = 'no-face'),
                      TOTAL(status = 'failed'), TOTAL(status IN ('pending', 'running')), TOTAL(faces * (status = 'done')),
                      AVG(ssim), AVG(psnr), AVG(id_distance), COUNT(ssim), MIN(CASE WHEN status = 'failed' THEN exit_code END),
                      AVG(CASE WHEN status = 'done' THEN seconds END)
               FROM items""").fetchone()
        keys = ("items", "done", "with_faces", "without_faces", "failed", "pending", "faces")
        out: dict[str, Any] = {k: int(v or 0) for k, v in zip(keys, row[:7])}
        if row[10]:
            out["evaluation"] = {"items": int(row[10]), "ssim": row[7], "psnr": row[8], "id_distance_dlib": row[9]}
        out["failed_exit_code"] = int(row[11]) if row[11] is not None else 0
        out["item_seconds"] = row[12]  # mean worker time of a done item's last attempt
        return out

    def failures(self, limit: int = MAX_FAILURES_LISTED) -> list[dict[str, Any]]:
        """Failed items (key, attempts, one-line reason), first ``limit`` by key."""
        cur = self.db.execute("SELECT key, attempts, message FROM items WHERE status = 'failed' ORDER BY key LIMIT ?", (limit,))
        return [{"key": k, "attempts": a, "reason": m} for k, a, m in cur]

    def rows(self) -> list[dict[str, Any]]:
        """Every row as a dict (for inspection and tests; not for large ledgers)."""
        cur = self.db.execute("SELECT * FROM items ORDER BY key")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def _tx(self) -> "_Transaction":
        return _Transaction(self.db)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")

