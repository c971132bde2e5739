"""The driver's scheduling with a scripted engine: bounded in-flight tasks, retry budget, and a crash
that several in-flight tasks share charged to the culprit alone. Plus the ledger and the lock."""
from __future__ import annotations

from pathlib import Path

import pytest
from tqdm import tqdm

from facedeid.batch import run_batch
from facedeid.batch.engines import Engine
from facedeid.batch.ledger import Ledger
from facedeid.batch.manifest import Item, chunked
from facedeid.batch.outdir import locked
from facedeid.batch.runner import RunStats, _Scheduler
from facedeid.batch.worker import Outcome, Task, crash_outcome
from facedeid.errors import OutputError


class ScriptedEngine(Engine):
    """Runs nothing: ``bad`` items always fail, ``crasher`` kills its 'pool' (every in-flight task lost,
    not attributable unless alone); the rest succeed."""

    name = "scripted"
    precise_crashes = False

    def __init__(self, workers: int, bad: set[str], crasher: str) -> None:
        self.workers, self.bad, self.crasher = workers, bad, crasher
        self.running: list[Task] = []
        self.peak = 0

    @property
    def inflight(self) -> int:
        return len(self.running)

    def submit(self, task: Task) -> None:
        self.running.append(task)
        self.peak = max(self.peak, len(self.running))

    def wait(self) -> list[Outcome]:
        lost, self.running = self.running, []
        if any(t.key == self.crasher for t in lost):
            return [crash_outcome(t, "test", attributable=len(lost) == 1) for t in lost]
        return [Outcome(t.key, "error", message="bad", exit_code=3) if t.key in self.bad else Outcome(t.key, "ok", faces=1)
                for t in lost]

    def close(self) -> None:
        self.running = []


def test_crash_charged_to_culprit_only_and_retries_bounded(tmp_path: Path) -> None:
    items = [Item(f"{i:03d}.jpg", f"{i:03d}.jpg") for i in range(40)]
    items.insert(5, Item("003.jpg", "003.jpg"))  # listed twice in one chunk: runs once
    engine = ScriptedEngine(workers=2, bad={"005.jpg"}, crasher="017.jpg")
    stats = RunStats()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.bind({"method": "m", "detector": "d", "on_no_face": "copy"})
        sched = _Scheduler(engine, ledger, retries=3, stats=stats, bar=tqdm(disable=True))
        for chunk in chunked(items, 7):
            ledger.register(chunk)
            for it in ledger.eligible(chunk, 3):
                sched.add(Task(it.key, it.src, str(tmp_path / it.key)))
        sched.drain()
        rows = {r["key"]: r for r in ledger.rows()}
    assert engine.peak <= engine.capacity == 4
    assert (rows["005.jpg"]["status"], rows["005.jpg"]["attempts"]) == ("failed", 3)
    assert (rows["017.jpg"]["status"], rows["017.jpg"]["attempts"]) == ("failed", 3)
    assert "worker process died" in rows["017.jpg"]["message"]
    others = [r for k, r in rows.items() if k not in ("005.jpg", "017.jpg")]
    assert len(others) == 38 and all(r["status"] == "done" and r["attempts"] == 1 for r in others)
    assert stats.finished == 40 and stats.crashes >= 3 and len(rows) == 40


def test_ledger_requeues_interrupted_rows_uncounted(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.bind({"method": "m", "detector": "d", "on_no_face": "copy"})
        ledger.register([Item("a.jpg", "a.jpg"), Item("a.jpg", "a.jpg"), Item("b.jpg", "b.jpg")])
        ledger.mark_running("a.jpg")
        assert ledger.requeue_running() == 1
        assert [(r["key"], r["status"], r["attempts"]) for r in ledger.rows()] == [("a.jpg", "pending", 0), ("b.jpg", "pending", 0)]
        assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_second_concurrent_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("x.jpg\n")
    with locked(tmp_path / "out"):
        with pytest.raises(OutputError, match="another batch run"):
            run_batch(tmp_path / "list.txt", tmp_path / "out", "pixelate", plan_only=True)
    assert run_batch(tmp_path / "list.txt", tmp_path / "out", "pixelate", plan_only=True).totals["pending"] == 1
