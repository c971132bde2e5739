"""The one data path: decode → detect → (landmarks) → method → paste back → encode.

CLI, Python API and benchmarks all call these functions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .errors import BadArguments, FaceDeidError, NoFaceFound, OutputError
from .faces.detect import DEFAULT_DETECTOR, detect
from .faces.landmarks import with_landmarks68
from .faces.types import Face
from .media.images import IMAGE_SUFFIXES, DecodedImage, encode_image, read_image, write_atomic
from .media.video import VIDEO_SUFFIXES
from .methods.base import Context, Method, get_method, parse_spec

DEFAULT_METHOD = "pixelate"
NO_FACE_POLICIES = ("copy", "fail")


@dataclass
class ImageResult:
    """An anonymized RGB image, the faces it was based on and the method's report."""

    image: np.ndarray
    faces: list[Face]
    report: dict[str, Any] = field(default_factory=dict)


def resolve_method(method: str | Method, params: dict[str, Any] | None = None) -> Method:
    """A :class:`Method` from an instance, a name, or a spec such as ``blur:r=20``."""
    if isinstance(method, Method):
        if params:
            raise BadArguments("pass parameters either in the Method instance or as params, not both")
        return method
    name, spec_params = parse_spec(method)
    return get_method(name, {**spec_params, **(params or {})})


def anonymize(
    image: np.ndarray,
    method: str | Method = DEFAULT_METHOD,
    params: dict[str, Any] | None = None,
    detector: str = DEFAULT_DETECTOR,
    faces: Sequence[Face] | None = None,
    skip: Iterable[int] = (),
    ctx: Context | None = None,
) -> ImageResult:
    """Anonymize every face in an RGB uint8 image (H×W×3).

    ``faces`` may be given to skip detection; ``skip`` lists indices of faces to leave untouched
    (e.g. a consenting person). Returns the new image; the input array is not modified.
    """
    m = resolve_method(method, params)
    ctx = ctx or Context()
    if faces is None:
        faces = detect(image, detector)
    faces = list(faces)
    if getattr(m, "needs_68", False) or getattr(m.params, "region", "") == "hull":
        faces = [with_landmarks68(image, f) for f in faces]
    skipped = set(skip)
    targets = [f for i, f in enumerate(faces) if i not in skipped]
    out = m.apply(image, targets, ctx) if targets else None
    result = out.image if out is not None else image.copy()
    report = {"method": m.spec(), "faces": len(faces), "anonymized": len(targets), "randomness": ctx.rng.describe()}
    report.update(ctx.report)
    if out is not None:
        report.update(out.report)
    return ImageResult(result, faces, report)


# --------------------------------------------------------------------------- files
@dataclass
class FileResult:
    src: Path
    dst: Path | None
    status: str  # "ok", "no-face", "error", "skipped"
    faces: int = 0
    message: str = ""
    exit_code: int = 0


def _is_own_output(path: Path) -> bool:
    return path.name.startswith(".facedeid-")


def _walk(root: Path, exclude: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() != exclude and not d.startswith("."))
        for name in sorted(filenames):
            p = here / name
            if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES and not _is_own_output(p):
                yield p


def plan(inputs: Sequence[str | Path], out: str | Path) -> Iterator[tuple[Path, Path]]:
    """Pairs (input file, output file). Directories are walked recursively and mirrored under
    ``out``; files inside ``out`` are never taken as inputs; an output never equals an input."""
    out = Path(out)
    out_res = out.resolve()
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file() and out.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
    for item in inputs:
        src = Path(item)
        if src.is_dir():
            for p in _walk(src, out_res):
                yield p, out / src.name / p.relative_to(src) if len(inputs) > 1 else out / p.relative_to(src)
        elif single_file:
            yield src, out
        else:
            yield src, out / src.name


def check_output(src: Path, dst: Path) -> None:
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: refusing to overwrite the input")


@dataclass(frozen=True)
class VideoOptions:
    """Video settings: detector every ``detect_every`` frames, x264 CRF ``quality``, keep the frames
    decoded before a corruption (``keep_partial``), write the per-frame JSON report (``report``)."""

    detect_every: int = 1
    quality: int = 18
    keep_partial: bool = False
    report: bool = True


def _anonymize_video_file(src: Path, dst: Path, method: Method, detector: str, on_no_face: str, video: VideoOptions) -> FileResult:
    from .video_pipeline import anonymize_video

    if dst.suffix.lower() in (".avi", ".webm"):
        dst = dst.with_suffix(".mp4")  # H.264 + copied audio need an MP4-family container
    report = dst.with_name(dst.name + ".facedeid.json") if video.report else None
    whole = method.anonymize_video_file(src, dst, detector, video.detect_every, video.quality, report)
    if whole is not None:
        return _video_result(src, dst, on_no_face, report, whole.get("frames_with_faces", 0),
                             len(whole.get("uncertain_frames", [])), len(whole.get("tracks", [])), None)
    rep = anonymize_video(src, dst, method, detector, video.detect_every, video.quality, video.keep_partial, report)
    return _video_result(src, dst, on_no_face, report, rep.frames_with_faces, len(rep.uncertain_frames), rep.tracks,
                         rep.frames if rep.transcode.get("truncated") else None)


def _video_result(src: Path, dst: Path, on_no_face: str, report: Path | None, frames_with_faces: int, uncertain: int,
                  tracks: int, truncated_frames: int | None) -> FileResult:
    """The file result of a video run (no face with ``fail``: the output is removed and an error raised)."""
    if not frames_with_faces and on_no_face == "fail":
        dst.unlink(missing_ok=True)
        raise NoFaceFound(f"{src}: no face found in any frame")
    msg = "" if frames_with_faces else f"{src}: no face found in any frame; re-encoded without metadata"
    if uncertain:
        msg = f"{src}: {uncertain} frame(s) with uncertain coverage (held tracks), see {report}"
    if truncated_frames is not None:
        msg = f"{src}: truncated input, {truncated_frames} decoded frame(s) written"
    return FileResult(src, dst, "ok" if frames_with_faces else "no-face", faces=tracks, message=msg)


def _write_output(dst: Path, dec: DecodedImage, image: np.ndarray, method: Method) -> None:
    """Encode and write atomically; when the method asks for exact recovery (``identity-password``
    with ``exact=true``), embed the encrypted original pixels of the changed regions (a PNG chunk,
    JPEG APP11 segments, or a ``.facedeid-payload`` sidecar for other formats)."""
    from .methods.identity_privacy import recovery_password

    encoded = encode_image(dec, image)
    password = recovery_password(method)
    if password is None:
        write_atomic(dst, encoded)
        return
    from .media import payload
    from .recovery import seal_original

    blob = seal_original(dec.rgb, image, password)
    if encoded.startswith(payload.PNG_SIGNATURE) or encoded.startswith(b"\xff\xd8"):
        write_atomic(dst, payload.embed(encoded, None, blob))
    else:
        write_atomic(dst, encoded)
        payload.embed(dst, None, blob)


def anonymize_file(
    src: str | Path,
    dst: str | Path,
    method: Method,
    detector: str = DEFAULT_DETECTOR,
    on_no_face: str = "copy",
    ctx: Context | None = None,
    video: VideoOptions | None = None,
) -> FileResult:
    """Anonymize one image or video file into ``dst`` (written atomically, no metadata).

    With no face found: ``copy`` writes the image re-encoded without metadata and reports
    ``no-face``; ``fail`` writes nothing and reports the error.
    """
    src, dst = Path(src), Path(dst)
    if on_no_face not in NO_FACE_POLICIES:
        raise BadArguments(f"on_no_face must be one of {', '.join(NO_FACE_POLICIES)}")
    if src.suffix.lower() in VIDEO_SUFFIXES:
        try:
            check_output(src, dst)
            return _anonymize_video_file(src, dst, method, detector, on_no_face, video or VideoOptions())
        except FaceDeidError as exc:
            return FileResult(src, None, "error", message=str(exc), exit_code=exc.exit_code)
    try:
        check_output(src, dst)
        dec: DecodedImage = read_image(src)
        res = anonymize(dec.rgb, method, detector=detector, ctx=ctx)
        if not res.faces and on_no_face == "fail":
            raise NoFaceFound(f"{src}: no face found")
        _write_output(dst, dec, res.image, method)
    except FaceDeidError as exc:
        return FileResult(src, None, "error", message=str(exc), exit_code=exc.exit_code)
    status = "ok" if res.faces else "no-face"
    msg = "" if res.faces else f"{src}: no face found; copied without metadata"
    return FileResult(src, dst, status, faces=len(res.faces), message=msg)
