"""The batch driver: streams the manifest in chunks through the ledger, feeds an engine with a
bounded number of tasks in flight, records every outcome, retries within the budget, and writes
the summary. The driver is the only writer of the ledger.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import BadArguments
from ..faces.detect import DEFAULT_DETECTOR, detect
from ..media.images import write_atomic
from ..methods.base import Method, SetMethod
from ..pipeline import DEFAULT_METHOD, resolve_method
from .engines import Engine, make_engine
from .ledger import Ledger
from .manifest import Item, chunked, iter_items
from .outdir import LEDGER_NAME, SUMMARY_NAME, locked, remove_outputs, sweep_partials
from .worker import Job, Outcome, Task

CHUNK = 256
DEFAULT_RETRIES = 3


@dataclass
class RunStats:
    """What this run did (the ledger holds the totals over every run)."""

    seen: int = 0  # manifest items read
    skipped: int = 0  # already done, or retry budget spent
    submitted: int = 0  # new items started (retries not counted)
    finished: int = 0  # items that reached done or failed in this run
    attempts: int = 0
    retried: int = 0  # attempts that failed and were run again
    crashes: int = 0  # attempts lost with their worker process
    seconds: float = 0.0  # wall time of the run, engine start included
    first_result_seconds: float = 0.0  # until the first outcome: cluster and workers started, models loaded

    @property
    def items_per_s(self) -> float:
        return self.finished / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BatchSummary:
    """The end-of-run report, printed by the CLI and stored as JSON in the output folder."""

    out: str
    engine: str
    workers: int
    method: str
    detector: str
    plan_only: bool
    totals: dict[str, Any]
    run: RunStats
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else the lowest exit code of the failed items (3: unreadable)."""
        return int(self.totals.get("failed_exit_code", 0)) if self.totals.get("failed") else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run"]["items_per_s"] = self.run.items_per_s
        d["exit_code"] = self.exit_code
        return d

    def lines(self, max_failures: int = 20) -> list[str]:
        """Human-readable summary lines."""
        t, r = self.totals, self.run
        out = [
            f"items {t['items']}: done {t['done']} ({t['with_faces']} with faces, {t['without_faces']} without), "
            f"failed {t['failed']}, pending {t['pending']}; faces found {t['faces']}",
            f"this run: {r.finished} finished, {r.skipped} skipped, {r.retried} retried, {r.crashes} worker crashes; "
            f"{r.seconds:.1f} s (first result after {r.first_result_seconds:.1f} s), {r.items_per_s:.2f} items/s "
            f"({self.engine}, {self.workers} workers)",
        ]
        if "evaluation" in t:
            e = t["evaluation"]
            out.append(f"evaluation ({e['items']} items): mean SSIM {e['ssim']:.4f}, mean dlib identity distance "
                       f"{e['id_distance_dlib'] if e['id_distance_dlib'] is None else round(e['id_distance_dlib'], 4)}")
        out += [f"failed: {f['key']} ({f['attempts']} attempts): {f['reason']}" for f in self.failures[:max_failures]]
        if t["failed"] > max_failures:
            out.append(f"… and {t['failed'] - max_failures} more failures (see {Path(self.out) / LEDGER_NAME})")
        return out


def dump_json(obj: Any) -> str:
    """JSON with non-finite floats written as null (strict JSON)."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), indent=1)


def batch_method(method: str | Method, params: dict[str, Any] | None) -> Method:
    """The method for a batch; set methods (k-Same family) are refused: each of their outputs depends
    on the whole set, which cannot be cut into independent, resumable items."""
    m = resolve_method(method, params)
    if isinstance(m, SetMethod):
        raise BadArguments(f"{m.name} is a set method (every output depends on the whole set) and cannot run item by "
                           "item: use `facedeid anonymize-set`")
    return m


def _fingerprint(job: Job) -> dict[str, str]:
    return {"method": job.method, "detector": job.detector, "on_no_face": job.on_no_face}


class _Scheduler:
    """Feeds an engine from a queue with at most ``engine.capacity`` tasks in flight, records every
    outcome, and re-queues failed attempts while the retry budget lasts. Tasks lost in a crash that
    cannot be pinned on one of them (a broken local pool) are re-run one at a time, uncounted, so
    that the culprit alone is charged."""

    def __init__(self, engine: Engine, ledger: Ledger, retries: int, stats: RunStats, bar: tqdm, t0: float = 0.0) -> None:
        self.engine, self.ledger, self.retries, self.stats, self.bar = engine, ledger, retries, stats, bar
        self.t0 = t0 or time.perf_counter()
        self.queue: deque[Task] = deque()
        self.suspects: deque[Task] = deque()
        self.tasks: dict[str, Task] = {}  # queued, in flight or waiting for a retry, until final

    def add(self, task: Task) -> None:
        """Queue a task (a key listed twice runs once), running the engine while the queue is full."""
        if task.key in self.tasks:
            self.stats.skipped += 1
            return
        self.tasks[task.key] = task
        self.queue.append(task)
        while len(self.queue) >= self.engine.capacity:
            self.step()

    def drain(self) -> None:
        while self.queue or self.suspects or self.engine.inflight:
            self.step()

    def step(self) -> None:
        """Submit one task if there is room (suspects alone), else wait for outcomes."""
        if self.suspects:
            if self.engine.inflight:
                self._collect()
            else:
                self._submit(self.suspects.popleft())
        elif self.queue and self.engine.inflight < self.engine.capacity:
            self._submit(self.queue.popleft())
        else:
            self._collect()

    def _submit(self, task: Task) -> None:
        self.ledger.mark_running(task.key)
        self.engine.submit(task)

    def _collect(self) -> None:
        outcomes = self.engine.wait()
        if not self.stats.first_result_seconds:
            self.stats.first_result_seconds = time.perf_counter() - self.t0
        for outcome in outcomes:
            self._handle(outcome, self.tasks[outcome.key])

    def _handle(self, o: Outcome, task: Task) -> None:
        if o.crashed:
            self.stats.crashes += 1
            if not o.attributable:
                self.ledger.requeue(task.key)
                self.suspects.append(task)
                return
        self.stats.attempts += 1
        if self.ledger.record(o, self.retries) == "pending":
            self.stats.retried += 1
            isolate = o.crashed and not self.engine.precise_crashes  # a known crasher would take others down
            (self.suspects.append if isolate else self.queue.appendleft)(task)
            return
        del self.tasks[task.key]
        self.stats.finished += 1
        self.bar.update(1)


def _tasks(ledger: Ledger, items: list[Item], out: Path, retries: int, stats: RunStats) -> list[Task]:
    """Register a chunk of items and return the tasks still to run (absolute paths)."""
    ledger.register(items)
    todo = ledger.eligible(items, retries)
    stats.seen += len(items)
    stats.skipped += len(items) - len(todo)
    root = str(out)
    return [Task(i.key, os.path.abspath(i.src), os.path.join(root, i.key)) for i in todo]


def _stream(source: str | Path, out: Path, ledger: Ledger, retries: int, stats: RunStats, sched: _Scheduler | None,
            limit: int | None) -> None:
    """Read the manifest chunk by chunk into the ledger; hand eligible tasks to ``sched`` (None: plan only)."""
    for chunk in chunked(iter_items(source, out), CHUNK):
        for task in _tasks(ledger, chunk, out, retries, stats):
            if limit is not None and stats.submitted >= limit:
                return
            stats.submitted += 1
            if sched is not None:
                sched.add(task)


def _check_detector(detector: str) -> None:
    """Fail early, in the driver, on an unknown detector name (loads that detector once)."""
    import numpy as np

    detect(np.zeros((32, 32, 3), np.uint8), detector)


def run_batch(
    source: str | Path,
    out: str | Path,
    method: str | Method = DEFAULT_METHOD,
    params: dict[str, Any] | None = None,
    detector: str = DEFAULT_DETECTOR,
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retries: int = DEFAULT_RETRIES,
    reset: bool = False,
    evaluate: bool = False,
    plan_only: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> BatchSummary:
    """De-identify every item of a folder or manifest into ``out`` (mirrored tree, atomic writes)
    with the same library path as ``facedeid anonymize``, resumably (see :mod:`.ledger`).

    ``plan_only`` registers the items in the ledger and counts what is left without running
    anything; ``limit`` stops after starting that many new items. Raises :class:`BadArguments` for
    a set method, bad settings, or a ledger made with other settings (unless ``reset``, which deletes
    the outputs the ledger recorded and forgets it).
    """
    if retries < 1:
        raise BadArguments("--retries must be at least 1")
    m = batch_method(method, params)
    job = Job(m.spec(), detector, "copy", evaluate)
    out = Path(os.path.abspath(out))
    if not plan_only:
        _check_detector(detector)
    with locked(out), Ledger(out / LEDGER_NAME) as ledger:
        if reset:
            remove_outputs(out, ledger.done_keys())
            ledger.clear()
        ledger.bind(_fingerprint(job))
        ledger.requeue_running()
        sweep_partials(out)
        stats, t0 = RunStats(), time.perf_counter()
        eng = None if plan_only else make_engine(engine, job, workers, address)
        try:
            with tqdm(unit="img", disable=not progress) as bar:
                sched = None if eng is None else _Scheduler(eng, ledger, retries, stats, bar, t0)
                _stream(source, out, ledger, retries, stats, sched, limit)
                if sched is not None:
                    sched.drain()
        finally:
            if eng is not None:
                eng.close()
            ledger.requeue_running()
            sweep_partials(out)
        stats.seconds = time.perf_counter() - t0
        summary = BatchSummary(str(out), engine, eng.workers if eng else 0, job.method, detector, plan_only,
                               ledger.totals(), stats, ledger.failures())
    write_atomic(out / SUMMARY_NAME, dump_json(summary.to_dict()).encode())
    return summary
