"""The public Python API (re-exported by :mod:`facedeid`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from tqdm import tqdm

from .faces.detect import DEFAULT_DETECTOR, detect
from .faces.types import Face
from .media.images import read_image
from .methods.base import Context
from .pipeline import DEFAULT_METHOD, FileResult, VideoOptions, anonymize, anonymize_file, plan, resolve_method
from .privacy.randomness import PrivacyRandom

__all__ = ["anonymize", "anonymize_paths", "detect_file", "detect"]


def detect_file(path: str | Path, detector: str = DEFAULT_DETECTOR, with_68: bool = False) -> list[Face]:
    """Detect faces in an image file (EXIF orientation applied)."""
    return detect(read_image(path).rgb, detector, with_68=with_68)


def anonymize_paths(
    inputs: Sequence[str | Path],
    output: str | Path,
    method: str | None = None,
    params: dict[str, Any] | None = None,
    detector: str = DEFAULT_DETECTOR,
    on_no_face: str = "copy",
    seed: int | None = None,
    quiet: bool = True,
    video: VideoOptions | None = None,
) -> Iterator[FileResult]:
    """Anonymize files and folders into ``output`` (mirrored tree); yields one result per file.

    Errors in one file are reported in its result and the others are still processed.
    """
    m = resolve_method(method or DEFAULT_METHOD, params)
    missing = [str(p) for p in inputs if not Path(p).exists()]
    for p in missing:
        yield FileResult(Path(p), None, "error", message=f"{p}: no such file or folder", exit_code=3)
    jobs = list(plan([p for p in inputs if Path(p).exists()], output))
    bar = tqdm(jobs, unit="img", disable=quiet or len(jobs) <= 1)
    for i, (src, dst) in enumerate(bar):
        ctx = Context(rng=PrivacyRandom(None if seed is None else seed + i))
        yield anonymize_file(src, dst, m, detector=detector, on_no_face=on_no_face, ctx=ctx, video=video)
