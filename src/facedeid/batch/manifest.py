"""What a batch processes: a lazily walked folder, a text file with one path per line, a CSV with a
``path`` column (and an optional ``output`` column), or a single image.

Every item has a *key*: its output path relative to the output folder (POSIX form). Keys name the
items in the ledger, so an item keeps its key from run to run. Nothing here reads every item into
memory: manifests are streamed and cut into chunks.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, TypeVar

from ..errors import BadArguments
from ..media.images import IMAGE_SUFFIXES
from ..pipeline import plan

T = TypeVar("T")
CSV_SUFFIXES = (".csv",)


@dataclass(frozen=True)
class Item:
    """One input file (``src``, as walked or made absolute) and where its result goes: ``out / key``."""

    key: str
    src: str


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` elements, read lazily."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _inside(path: str, root: str) -> bool:
    """Whether normalised absolute ``path`` is ``root`` or below it (string test: fast on big manifests)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def mirror_key(absolute: str, base: str) -> str:
    """Output key of a listed file (normalised absolute path): its path relative to ``base`` when
    inside it, else its absolute path without the drive and leading ``/`` (as ``tar`` does), so that
    distinct inputs get distinct outputs."""
    inside = absolute != base and _inside(absolute, base)
    rel = absolute[len(base.rstrip(os.sep)) + 1:] if inside else os.path.splitdrive(absolute)[1].lstrip(os.sep)
    return rel.replace(os.sep, "/")


def _output_key(value: str, line: str) -> str:
    """An explicit ``output`` entry: a relative path that stays inside the output folder."""
    rel = PurePosixPath(value.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise BadArguments(f"{line}: output {value!r} must be a relative path inside the output folder")
    return rel.as_posix()


def _from_folder(root: Path, out: Path) -> Iterator[Item]:
    for src, dst in plan([root], out):
        yield Item(dst.relative_to(out).as_posix(), str(src))


def _listed(entries: Iterable[tuple[str, str | None, str]], base: str, out: str) -> Iterator[Item]:
    """Items of (path, explicit output or None, where-for-messages) entries; relative paths are read
    from ``base``; files inside ``out`` are never taken as inputs (as for folders)."""
    for path, output, where in entries:
        src = os.path.normpath(os.path.join(base, path))
        if not _inside(src, out):
            yield Item(_output_key(output, where) if output else mirror_key(src, base), src)


def _text_entries(manifest: Path) -> Iterator[tuple[str, str | None, str]]:
    with open(manifest, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            path = line.strip()
            if path and not path.startswith("#"):
                yield path, None, f"{manifest}:{n}"


def _csv_entries(manifest: Path) -> Iterator[tuple[str, str | None, str]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "path" not in (reader.fieldnames or []):
            raise BadArguments(f"{manifest}: a CSV manifest needs a 'path' column (found: {', '.join(reader.fieldnames or []) or 'none'})")
        for n, row in enumerate(reader, 2):
            path = (row.get("path") or "").strip()
            if path:
                yield path, (row.get("output") or "").strip() or None, f"{manifest}:{n}"


def iter_items(source: str | Path, out: str | Path) -> Iterator[Item]:
    """Stream the items of a folder, a text manifest or a CSV manifest (see module doc).

    Relative paths in a manifest file are read relative to the manifest's folder. ``out`` must be
    absolute (keys are relative to it).
    """
    source, out = Path(source), Path(out)
    if source.is_dir():
        return _from_folder(source, out)
    if not source.is_file():
        raise BadArguments(f"{source}: no such manifest file or folder")
    if source.suffix.lower() in IMAGE_SUFFIXES:  # one image: a manifest of one
        entries: Iterable[tuple[str, str | None, str]] = [(source.name, None, str(source))]
    else:
        entries = _checked(_csv_entries(source) if source.suffix.lower() in CSV_SUFFIXES else _text_entries(source), source)
    return _listed(entries, os.path.abspath(source.parent), os.path.abspath(out))


def _checked(entries: Iterator[T], manifest: Path) -> Iterator[T]:
    """``entries`` with an undecodable manifest reported as bad arguments (one line)."""
    try:
        yield from entries
    except UnicodeDecodeError as exc:
        raise BadArguments(f"{manifest}: not a UTF-8 text or CSV manifest ({exc.reason} at byte {exc.start})") from None
