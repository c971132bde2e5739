"""Where items run: a local process pool (default) or a Ray cluster. Both run
:func:`worker.run_task` and hand back :class:`worker.Outcome` objects; the driver (runner.py) owns
scheduling, retries and the ledger, so both engines give the same results and the same ledger.

An engine holds at most ``capacity`` tasks in flight; :meth:`Engine.wait` blocks until at least one
finishes and returns the outcomes of every finished task.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from abc import ABC, abstractmethod
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import BadArguments, FaceDeidError, ModelUnavailable
from .worker import Job, Outcome, Task, crash_outcome, init_process, one_line, run_task, worker_id

ENGINES = ("local", "ray")
IN_FLIGHT_PER_WORKER = 2
FORKSERVER_PRELOAD = ("facedeid.batch.worker", "facedeid.methods.load_all")
LOOPBACK = "127.0.0.1"  # a private local Ray cluster listens on loopback only


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


class Engine(ABC):
    """Runs tasks somewhere; see module doc."""

    name: str
    workers: int
    precise_crashes: bool = True  # a dead worker fails only the task it ran

    @property
    def capacity(self) -> int:
        """Most tasks in flight at once (bounded memory)."""
        return IN_FLIGHT_PER_WORKER * self.workers

    @property
    @abstractmethod
    def inflight(self) -> int:
        """Tasks submitted and not yet returned by :meth:`wait`."""

    @abstractmethod
    def submit(self, task: Task) -> None:
        """Start one task."""

    @abstractmethod
    def wait(self) -> list[Outcome]:
        """Block until a task finishes; the outcomes of every finished task."""

    @abstractmethod
    def close(self) -> None:
        """Cancel what is in flight and release the workers."""


class LocalEngine(Engine):
    """A process pool of ``workers`` processes (see :func:`_worker_context`), each loading the
    models once in its initializer; started on the first task. A worker that dies breaks the pool: the
    tasks in flight come back as crashes, attributable only when a single task was in flight, and a
    new pool is started for the next task."""

    name = "local"
    precise_crashes = False

    def __init__(self, job: Job, workers: int) -> None:
        self.job, self.workers = job, workers
        self._futures: dict[cf.Future[Outcome], Task] = {}
        self._pool: cf.ProcessPoolExecutor | None = None  # started on the first task

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        """A started pool whose workers loaded the models; raises if a worker cannot start (a missing
        model, or a script that starts a batch without an ``if __name__ == "__main__"`` guard)."""
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=_worker_context(), initializer=init_process,
                                      initargs=(self.job,))
        try:
            pool.submit(worker_id).result()
        except BrokenProcessPool:
            pool.shutdown(wait=True, cancel_futures=True)
            raise FaceDeidError("the local worker processes cannot start (see the messages above)") from None
        return pool

    @property
    def inflight(self) -> int:
        return len(self._futures)

    def submit(self, task: Task) -> None:
        if self._pool is None:
            self._pool = self._new_pool()
        self._futures[self._pool.submit(run_task, self.job, task)] = task

    def wait(self) -> list[Outcome]:
        done, _ = cf.wait(self._futures, return_when=cf.FIRST_COMPLETED)
        if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
            return self._collect_broken()
        return [_result(f, self._futures.pop(f)) for f in done]

    def _collect_broken(self) -> list[Outcome]:
        """Every in-flight task after the pool broke: finished ones keep their result, the others are
        crashes (attributable only if alone); the pool is replaced."""
        cf.wait(self._futures)  # a broken pool fails every pending future
        futures, self._futures = self._futures, {}
        lost = [t for f, t in futures.items() if isinstance(f.exception(), BrokenProcessPool)]
        outcomes = [_result(f, t) for f, t in futures.items() if not isinstance(f.exception(), BrokenProcessPool)]
        outcomes += [crash_outcome(t, "process pool broken", attributable=len(lost) == 1) for t in lost]
        self.close()
        return outcomes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()


def _worker_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where there is one: a clean server process imports the library once and every
    worker (and every later pool of this process) is forked from it, without the driver's threads or
    models; ``spawn`` elsewhere."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    return ctx


def _result(future: cf.Future[Outcome], task: Task) -> Outcome:
    """A finished future's outcome; an exception outside the task (e.g. pickling) as an error."""
    exc = future.exception()
    if exc is None:
        return future.result()
    return Outcome(task.key, "error", message=one_line(f"{task.src}: {type(exc).__name__}: {exc}"), exit_code=1)


class RayEngine(Engine):
    """Ray tasks (one CPU each, no Ray-level retries: the driver retries and counts attempts). Each
    Ray worker process loads the models on its first task and keeps them (per-process cache). A worker
    that dies fails only the task it ran, so every crash is attributable.

    ``address`` None starts a private local cluster (loopback only) with ``workers`` CPUs; otherwise it is passed to
    ``ray.init`` (e.g. ``auto`` or ``HOST:PORT`` of ``ray start --head``). A Ray session already
    initialised in this process is used as it is. Input and output paths must be reachable by every
    node under the same names (one machine, or a shared file system).
    """

    name = "ray"

    def __init__(self, job: Job, workers: int | None, address: str | None) -> None:
        ray = _import_ray()
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(address="local", num_cpus=workers or default_workers(), _node_ip_address=LOOPBACK, **kwargs)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        self._job = ray.put(job)
        self._refs: dict[Any, Task] = {}

    @property
    def inflight(self) -> int:
        return len(self._refs)

    def submit(self, task: Task) -> None:
        self._refs[self._remote.remote(self._job, task)] = task

    def wait(self) -> list[Outcome]:
        ray = self._ray
        ready, rest = ray.wait(list(self._refs), num_returns=1)
        if rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return [self._outcome(ref) for ref in ready]

    def _outcome(self, ref: Any) -> Outcome:
        task = self._refs.pop(ref)
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:  # worker or node died, task cancelled
            return crash_outcome(task, type(exc).__name__)

    def close(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owns:
            self._ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ModelUnavailable("the ray engine needs Ray: pip install 'facedeid[ray]'") from None
    return ray


def make_engine(name: str, job: Job, workers: int | None = None, address: str | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``)."""
    if workers is not None and workers < 1:
        raise BadArguments("--workers must be at least 1")
    if name == "local":
        if address:
            raise BadArguments("--address is for --engine ray")
        return LocalEngine(job, workers or default_workers())
    if name == "ray":
        return RayEngine(job, workers, address)
    raise BadArguments(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
