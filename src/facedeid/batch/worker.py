"""What runs in a worker process (local pool or Ray): one item through :func:`pipeline.anonymize_file`.

Models are loaded once per process (:func:`prepare` is cached on the job), never per item. A task
never raises: every failure comes back as an :class:`Outcome` with a one-line reason.
"""
from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FaceDeidError
from ..faces.detect import detect
from ..faces.landmarks import landmarks5
from ..faces.types import Box
from ..methods.base import Method
from ..pipeline import anonymize_file, resolve_method

MAX_MESSAGE = 500


@dataclass(frozen=True)
class Job:
    """Settings shared by every item of a batch (hashable: it keys the per-process model cache)."""

    method: str  # full spec, e.g. "pixelate:n=8,block=0,..."
    detector: str
    on_no_face: str = "copy"
    evaluate: bool = False


@dataclass(frozen=True)
class Task:
    """One item to run: ``key`` names it in the ledger; paths are absolute (workers may run elsewhere)."""

    key: str
    src: str
    dst: str


@dataclass
class Outcome:
    """What one attempt at one item gave. ``status`` is ``ok``, ``no-face`` or ``error``.

    ``crashed`` marks an attempt lost with its worker process; ``attributable`` says whether the
    crash is known to be this item's (False when several items shared a broken local pool).
    """

    key: str
    status: str
    faces: int = 0
    message: str = ""
    exit_code: int = 0
    seconds: float = 0.0
    worker: str = ""
    crashed: bool = False
    attributable: bool = True
    ssim: float | None = None
    psnr: float | None = None
    id_distance: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "no-face")


def one_line(text: str) -> str:
    """Whitespace collapsed to single spaces, cut to :data:`MAX_MESSAGE` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def crash_outcome(task: Task, reason: str, attributable: bool = True) -> Outcome:
    """The outcome of an attempt whose worker process died."""
    return Outcome(task.key, "error", message=one_line(f"{task.src}: worker process died ({reason})"), exit_code=1,
                   crashed=True, attributable=attributable)


@functools.cache
def _recognizer():  # type: ignore[no-untyped-def]
    from ..identity.recognizers import DlibRecognizer

    return DlibRecognizer()


@functools.cache
def prepare(job: Job) -> Method:
    """Load everything the job needs in this process, once: the method, the detector's models, the
    landmark predictor (and dlib's recognizer with ``evaluate``). OpenCV is kept to one thread per
    process since the processes already use every core."""
    import cv2

    cv2.setNumThreads(1)
    method = resolve_method(job.method)
    blank = np.zeros((64, 64, 3), np.uint8)
    detect(blank, job.detector)
    landmarks5(blank, Box(8, 8, 56, 56))
    if job.evaluate:
        _recognizer()
    return method


def init_process(job: Job) -> None:
    """Process-pool initializer: :func:`prepare` (models loaded once per worker)."""
    prepare(job)


def evaluate_item(task: Task, job: Job) -> dict[str, float | None]:
    """Per-item figures through :func:`facedeid.evaluation.evaluate_file`: whole-image SSIM and PSNR,
    and dlib's identity distance original↔anonymized (mean over the original's faces; None without)."""
    from ..evaluation import evaluate_file
    from ..media.images import read_image

    a, b = read_image(task.src).rgb, read_image(task.dst).rgb
    row, faces = evaluate_file(a, b, task.key, [_recognizer()], detectors=(), detector=job.detector)
    dists = [f.id_distance["dlib"] for f in faces if "dlib" in f.id_distance]
    return {"ssim": row.ssim, "psnr": row.psnr, "id_distance": float(np.mean(dists)) if dists else None}


def run_task(job: Job, task: Task) -> Outcome:
    """Run one item with the library path (:func:`pipeline.anonymize_file`); never raises."""
    t0 = time.perf_counter()
    try:
        res = anonymize_file(task.src, task.dst, prepare(job), detector=job.detector, on_no_face=job.on_no_face)
    except Exception as exc:  # noqa: BLE001 — a bug or resource failure in one item must not stop the batch
        return Outcome(task.key, "error", message=one_line(f"{task.src}: {type(exc).__name__}: {exc}"), exit_code=1,
                       seconds=time.perf_counter() - t0, worker=worker_id())
    out = Outcome(task.key, res.status, res.faces, one_line(res.message), res.exit_code, 0.0, worker_id())
    if job.evaluate and res.dst is not None:
        try:
            figures = evaluate_item(task, job)
            out.ssim, out.psnr, out.id_distance = figures["ssim"], figures["psnr"], figures["id_distance"]
        except (FaceDeidError, ValueError) as exc:
            out.message = one_line(f"{out.message} evaluation skipped: {exc}".strip())
    out.seconds = time.perf_counter() - t0
    return out
