"""The data path for set methods (k-Same family, book Ch. 3.1.2): every image is decoded and its faces
detected, then the method sees the whole set at once, then every image is encoded.

Same stages as :mod:`facedeid.pipeline` (detect, landmarks, align, masks, paste back, atomic writes,
mirrored folders); only the method step spans the set. Images in which no face is found take no
part in clustering: they are copied without metadata, with a warning, and listed in the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from .errors import BadArguments, FaceDeidError
from .faces.detect import DEFAULT_DETECTOR, detect
from .faces.landmarks import with_landmarks68
from .faces.types import Face
from .media.images import DecodedImage, encode_image, read_image, write_atomic
from .methods.base import Context, Method, MethodOutput, SetMethod
from .pipeline import FileResult, ImageResult, check_output, plan, resolve_method

DEFAULT_SET_METHOD = "ksame-pixel"


@dataclass
class SetResult:
    """One :class:`ImageResult` per input image (in order) and the set-level report."""

    results: list[ImageResult]
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class SetFilesResult:
    """One :class:`FileResult` per input file and the set-level report (``no_face`` lists paths)."""

    files: list[FileResult]
    report: dict[str, Any] = field(default_factory=dict)


def resolve_set_method(method: str | Method, params: dict[str, Any] | None = None) -> SetMethod:
    m = resolve_method(method, params)
    if not isinstance(m, SetMethod):
        raise BadArguments(f"{m.name} works on single images: use `facedeid anonymize` (set methods: k-Same family)")
    return m


def _needs_68(m: Method) -> bool:
    return bool(getattr(m, "needs_68", False)) or getattr(m.params, "region", "") == "hull"


def find_faces(images: Sequence[np.ndarray], m: Method, detector: str, quiet: bool = True) -> list[list[Face]]:
    """Detected faces of every image, with the 68 landmarks when the method needs them."""
    with_68 = _needs_68(m)
    return [detect(img, detector, with_68=with_68) for img in tqdm(images, unit="img", disable=quiet, desc="detect")]


def anonymize_set(
    images: Sequence[np.ndarray],
    method: str | Method = DEFAULT_SET_METHOD,
    params: dict[str, Any] | None = None,
    detector: str = DEFAULT_DETECTOR,
    ctx: Context | None = None,
    faces: Sequence[Sequence[Face]] | None = None,
    names: Sequence[str] | None = None,
    quiet: bool = True,
) -> SetResult:
    """Anonymize a set of RGB uint8 images with a set method (e.g. ``ksame-pixel``, ``k=10``).

    ``faces`` may be given (one list per image) to skip detection; ``names`` (one per image, e.g.
    file paths) lets a method find the images in a labels CSV. Inputs are not modified. Raises
    :class:`BadArguments` when the set cannot be anonymized (e.g. fewer than k distinct people).
    """
    m = resolve_set_method(method, params)
    ctx = ctx or Context()
    if faces is None:
        faces = find_faces(images, m, detector, quiet)
    if len(faces) != len(images) or (names is not None and len(names) != len(images)):
        raise BadArguments("faces and names need one entry per image")
    needs_68 = _needs_68(m)
    faces = [[with_landmarks68(img, f) for f in fs] if needs_68 else list(fs) for img, fs in zip(images, faces)]
    used = [i for i, fs in enumerate(faces) if fs]
    kwargs = {"names": [names[i] for i in used] if names is not None else None} if getattr(m, "accepts_names", False) else {}
    outs = m.apply_set([images[i] for i in used], [faces[i] for i in used], ctx, **kwargs)
    by_image = dict(zip(used, outs))
    results = [_image_result(img, faces[i], by_image.get(i), m.spec()) for i, img in enumerate(images)]
    report: dict[str, Any] = {"method": m.spec(), "images": len(images), "no_face": [i for i, fs in enumerate(faces) if not fs]}
    report["set_faces"] = [[i, j] for i in used for j in range(len(faces[i]))]  # face index → [image, face]
    report.update(ctx.report)
    return SetResult(results, report)


def _image_result(image: np.ndarray, faces: list[Face], out: MethodOutput | None, spec: str) -> ImageResult:
    """The method's output for one image, or an unchanged copy when it had no face."""
    report = {"method": spec, "faces": len(faces), **(out.report if out else {})}
    return ImageResult(out.image if out else np.array(image, copy=True), faces, report)


def _load(jobs: Sequence[tuple[Path, Path]]) -> tuple[list[tuple[Path, Path, DecodedImage]], list[FileResult]]:
    """Decode every input (a failing file is reported; the others go on)."""
    loaded, failed = [], []
    for src, dst in jobs:
        try:
            check_output(src, dst)
            loaded.append((src, dst, read_image(src)))
        except FaceDeidError as exc:
            failed.append(FileResult(src, None, "error", message=str(exc), exit_code=exc.exit_code))
    return loaded, failed


def _write(src: Path, dst: Path, dec: DecodedImage, res: ImageResult) -> FileResult:
    try:
        write_atomic(dst, encode_image(dec, res.image))
    except FaceDeidError as exc:
        return FileResult(src, None, "error", message=str(exc), exit_code=exc.exit_code)
    if not res.faces:
        return FileResult(src, dst, "no-face", message=f"{src}: no face found; copied without metadata (not in the set)")
    return FileResult(src, dst, "ok", faces=len(res.faces))


def anonymize_set_paths(
    inputs: Sequence[str | Path],
    output: str | Path,
    method: str | Method = DEFAULT_SET_METHOD,
    params: dict[str, Any] | None = None,
    detector: str = DEFAULT_DETECTOR,
    quiet: bool = True,
) -> SetFilesResult:
    """Anonymize image files and folders as ONE set into ``output`` (folders mirrored, atomic
    writes, no metadata). Nothing is written when the set method refuses the set."""
    m = resolve_set_method(method, params)
    missing = [FileResult(Path(p), None, "error", message=f"{p}: no such file or folder", exit_code=3) for p in inputs if not Path(p).exists()]
    loaded, failed = _load(list(plan([p for p in inputs if Path(p).exists()], output)))
    ctx = Context()
    res = anonymize_set([d.rgb for _, _, d in loaded], m, detector=detector, ctx=ctx, names=[str(s) for s, _, _ in loaded], quiet=quiet)
    files = missing + failed + [_write(s, d, dec, r) for (s, d, dec), r in zip(loaded, res.results)]
    report = dict(res.report)
    report["no_face"] = [str(loaded[i][0]) for i in res.report["no_face"]]
    report["set_faces"] = [[str(loaded[i][0]), j] for i, j in res.report["set_faces"]]
    report["errors"] = [f.message for f in missing + failed]
    return SetFilesResult(files, report)
