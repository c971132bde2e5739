"""Encrypted exact-recovery payload (issue 7, item 3).

The original pixels of the de-identified regions are packed losslessly (:func:`pack_patches`),
encrypted with AES-256-GCM under a key derived from the password by scrypt with a random salt
(:func:`seal`), and carried in the output file: a private ancillary PNG chunk, APP11 segments in a
JPEG, a top-level ``uuid`` box appended to an MP4/MOV video (:func:`embed_mp4_file`, identity-mask's
``embed``), or a sidecar file for every other format. Only the password holder can restore the original.

Sealed blob layout (big-endian)::

    b"FDRP" | version u8 | kdf u8 (1 = scrypt) | log2 N u8 | r u8 | p u8 | salt (16) | nonce (12)
    | AES-256-GCM ciphertext ‖ 16-byte tag

The whole header is authenticated as associated data, so changing any byte of the blob — header,
ciphertext or tag — is detected. A wrong password and an altered blob raise the same
:class:`~facedeid.errors.BadKey` with the same message, so an attacker learns nothing from which.
"""
from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import BadArguments, BadKey, UnsupportedMedia
from ..privacy.keys import SCRYPT_LOG2_N, SCRYPT_P, SCRYPT_R, Secret, derive_key
from .images import write_atomic

MAGIC = b"FDRP"
VERSION = 1
KDF_SCRYPT = 1
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
KDF_PURPOSE = "recovery-payload"
_HEADER = struct.Struct(">4sBBBBB")  # magic, version, kdf, log2 N, r, p
HEADER_BYTES = _HEADER.size + SALT_BYTES + NONCE_BYTES
BAD_KEY_MESSAGE = "wrong password, or the recovery payload was altered"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Private (2nd letter lower case), ancillary (1st lower), reserved bit clear (3rd upper) and
# unsafe-to-copy (4th upper): an editor that changes the pixels must drop it, since the patches
# describe those pixels.
PNG_CHUNK = b"fdRP"
JPEG_APP11 = 0xEB
JPEG_IDENT = b"facedeid-rp\x00"
JPEG_PIECE_BYTES = 65_000
SIDECAR_SUFFIX = ".facedeid-payload"

_PATCH_MAGIC = b"FDPT"
_PATCH_HEAD = struct.Struct(">4sBI")  # magic, version, count
_PATCH_ITEM = struct.Struct(">QQQ")  # y0, x0, length of the .npy bytes
_MAX_PLAIN = 1 << 31  # refuse patch sets that inflate beyond 2 GiB


# --------------------------------------------------------------------------------------------------
# Encryption


def seal(data: bytes, password: Secret) -> bytes:
    """Encrypt and authenticate ``data`` under ``password``: AES-256-GCM, key = scrypt(password,
    random 16-byte salt), random 96-bit nonce, header as associated data."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P) + salt + nonce
    key = derive_key(password, salt, KDF_PURPOSE, 32, log2_n=SCRYPT_LOG2_N, r=SCRYPT_R, p=SCRYPT_P)
    return header + AESGCM(key).encrypt(nonce, bytes(data), header)


def unseal(blob: bytes, password: Secret) -> bytes:
    """Decrypt a :func:`seal` blob. Raises BadKey (one message) for a wrong password, any altered
    byte, a truncated blob or an unknown format."""
    blob = bytes(blob)
    if len(blob) < HEADER_BYTES + TAG_BYTES:
        raise BadKey(BAD_KEY_MESSAGE)
    magic, version, kdf, log2_n, r, p = _HEADER.unpack_from(blob)
    # bounds on the KDF cost stop a forged header from making us burn memory or time
    if magic != MAGIC or version != VERSION or kdf != KDF_SCRYPT or not (10 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise BadKey(BAD_KEY_MESSAGE)
    header = blob[:HEADER_BYTES]
    salt = header[_HEADER.size : _HEADER.size + SALT_BYTES]
    nonce = header[_HEADER.size + SALT_BYTES :]
    key = derive_key(password, salt, KDF_PURPOSE, 32, log2_n=log2_n, r=r, p=p)
    try:
        return AESGCM(key).decrypt(nonce, blob[HEADER_BYTES:], header)
    except InvalidTag:
        raise BadKey(BAD_KEY_MESSAGE) from None


# --------------------------------------------------------------------------------------------------
# Original-pixel patches

Patch = tuple[int, int, np.ndarray]


def pack_patches(patches: list[Patch]) -> bytes:
    """Serialise patches (y0, x0, uint8/uint16 array H×W or H×W×C) losslessly: .npy bytes (no
    pickle) behind a small header, all zlib-compressed."""
    out = [_PATCH_HEAD.pack(_PATCH_MAGIC, 1, len(patches))]
    for y0, x0, pixels in patches:
        pixels = np.asarray(pixels)
        if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim not in (2, 3) or 0 in pixels.shape:
            raise BadArguments("a patch must be a non-empty uint8 or uint16 array, H×W or H×W×C")
        if int(y0) < 0 or int(x0) < 0:
            raise BadArguments("patch positions must be non-negative")
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(pixels), allow_pickle=False)
        npy = buf.getvalue()
        out.append(_PATCH_ITEM.pack(int(y0), int(x0), len(npy)) + npy)
    return zlib.compress(b"".join(out), 6)


def unpack_patches(data: bytes) -> list[Patch]:
    """Inverse of :func:`pack_patches`."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(bytes(data), _MAX_PLAIN)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("truncated or oversized")
        magic, version, count = _PATCH_HEAD.unpack_from(raw)
        if magic != _PATCH_MAGIC or version != 1:
            raise ValueError("not a patch set")
        pos, patches = _PATCH_HEAD.size, []
        for _ in range(count):
            y0, x0, length = _PATCH_ITEM.unpack_from(raw, pos)
            pos += _PATCH_ITEM.size
            if pos + length > len(raw):
                raise ValueError("truncated")
            pixels = np.load(io.BytesIO(raw[pos : pos + length]), allow_pickle=False)
            pos += length
            if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim not in (2, 3):
                raise ValueError("bad patch array")
            patches.append((int(y0), int(x0), pixels))
        if pos != len(raw):
            raise ValueError("trailing bytes")
    except (zlib.error, struct.error, ValueError) as exc:
        raise UnsupportedMedia(f"recovery payload: malformed patch data ({exc})") from None
    return patches


def apply_patches(image: np.ndarray, patches: list[Patch]) -> np.ndarray:
    """A copy of ``image`` with every patch written back at (y0, x0)."""
    out = np.array(image, copy=True)
    for y0, x0, pixels in patches:
        h, w = pixels.shape[:2]
        if y0 + h > out.shape[0] or x0 + w > out.shape[1]:
            raise BadArguments(f"patch at ({y0}, {x0}) of size {h}×{w} falls outside the {out.shape[0]}×{out.shape[1]} image")
        if pixels.shape[2:] != out.shape[2:] or pixels.dtype != out.dtype:
            raise BadArguments(f"patch {pixels.shape} {pixels.dtype} does not match the image {out.shape} {out.dtype}")
        out[y0 : y0 + h, x0 : x0 + w] = pixels
    return out


# --------------------------------------------------------------------------------------------------
# PNG: a private ancillary chunk before IEND


def _png_chunks(png: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of every chunk, end exclusive and including the CRC."""
    if not png.startswith(PNG_SIGNATURE):
        raise UnsupportedMedia("not a PNG file")
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(png):
        if pos + 8 > len(png):
            raise UnsupportedMedia("truncated PNG chunk")
        length, ctype = struct.unpack_from(">I4s", png, pos)
        end = pos + 12 + length
        if end > len(png):
            raise UnsupportedMedia("truncated PNG chunk")
        chunks.append((ctype, pos, end))
        pos = end
        if ctype == b"IEND":
            break
    if not chunks or chunks[-1][0] != b"IEND":
        raise UnsupportedMedia("PNG without IEND")
    return chunks


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def embed_png(png_bytes: bytes, blob: bytes) -> bytes:
    """The PNG with ``blob`` in a private ``fdRP`` chunk just before IEND (an existing one is replaced).
    Pixels and all other chunks are untouched."""
    png = bytes(png_bytes)
    if len(blob) >= 1 << 31:
        raise BadArguments("payload too large for a PNG chunk")
    parts = [PNG_SIGNATURE]
    for ctype, start, end in _png_chunks(png):
        if ctype == b"IEND":
            parts.append(_png_chunk(PNG_CHUNK, bytes(blob)))
        if ctype != PNG_CHUNK:
            parts.append(png[start:end])
    return b"".join(parts)


def extract_png(png_bytes: bytes) -> bytes | None:
    """The blob of the ``fdRP`` chunk, or None when the PNG carries none."""
    png = bytes(png_bytes)
    for ctype, start, end in _png_chunks(png):
        if ctype == PNG_CHUNK:
            return png[start + 8 : end - 4]
    return None


# --------------------------------------------------------------------------------------------------
# JPEG: APP11 segments after SOI / APP0 / APP1


def _jpeg_segments(jpg: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """Marker segments before the first scan: (marker, start, end), and the offset where the rest
    (SOS and entropy-coded data, or EOI) begins."""
    if not jpg.startswith(b"\xff\xd8"):
        raise UnsupportedMedia("not a JPEG file")
    segments, pos = [], 2
    while True:
        if pos >= len(jpg) or jpg[pos] != 0xFF:
            raise UnsupportedMedia("malformed JPEG marker structure")
        start = pos
        while pos < len(jpg) and jpg[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(jpg):
            raise UnsupportedMedia("truncated JPEG")
        marker = jpg[pos]
        pos += 1
        if marker in (0xDA, 0xD9):
            return segments, start
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            segments.append((marker, start, pos))
            continue
        if pos + 2 > len(jpg):
            raise UnsupportedMedia("truncated JPEG")
        (length,) = struct.unpack_from(">H", jpg, pos)
        if length < 2 or pos + length > len(jpg):
            raise UnsupportedMedia("truncated JPEG segment")
        pos += length
        segments.append((marker, start, pos))


def _is_ours(jpg: bytes, marker: int, start: int) -> bool:
    return marker == JPEG_APP11 and jpg[start + 4 : start + 4 + len(JPEG_IDENT)] == JPEG_IDENT


def embed_jpeg(jpeg_bytes: bytes, blob: bytes) -> bytes:
    """The JPEG with ``blob`` split over APP11 segments (identifier, sequence number, count, ≤ 65 000
    bytes each) inserted after SOI and the leading APP0 (JFIF) / APP1 (Exif) segments. Earlier
    facedeid segments are replaced; the scan data is untouched, so the decoded pixels are the same."""
    jpg, blob = bytes(jpeg_bytes), bytes(blob)
    if not blob:
        raise BadArguments("empty payload")
    pieces = [blob[i : i + JPEG_PIECE_BYTES] for i in range(0, len(blob), JPEG_PIECE_BYTES)]
    if len(pieces) > 0xFFFF:
        raise BadArguments("payload too large for JPEG APP11 segments")
    ours = []
    for seq, piece in enumerate(pieces):
        body = JPEG_IDENT + struct.pack(">HH", seq, len(pieces)) + piece
        ours.append(struct.pack(">BBH", 0xFF, JPEG_APP11, len(body) + 2) + body)
    segments, rest = _jpeg_segments(jpg)
    kept = [(m, s, e) for m, s, e in segments if not _is_ours(jpg, m, s)]
    lead = 0
    while lead < len(kept) and kept[lead][0] in (0xE0, 0xE1):
        lead += 1
    parts = [b"\xff\xd8"] + [jpg[s:e] for _, s, e in kept[:lead]] + ours + [jpg[s:e] for _, s, e in kept[lead:]]
    return b"".join(parts) + jpg[rest:]


def extract_jpeg(jpeg_bytes: bytes) -> bytes | None:
    """Reassemble the blob from facedeid APP11 segments; None when there are none. Missing,
    duplicate or inconsistent pieces raise BadKey (the payload was altered)."""
    jpg = bytes(jpeg_bytes)
    segments, _ = _jpeg_segments(jpg)
    found: dict[int, bytes] = {}
    totals = set()
    head = 4 + len(JPEG_IDENT)
    for marker, start, end in segments:
        if not _is_ours(jpg, marker, start):
            continue
        if end < head + 4:
            raise BadKey(BAD_KEY_MESSAGE)
        seq, total = struct.unpack_from(">HH", jpg, start + head)
        if seq in found:
            raise BadKey(BAD_KEY_MESSAGE)
        found[seq] = jpg[start + head + 4 : end]
        totals.add(total)
    if not found:
        return None
    if len(totals) != 1 or set(found) != set(range(totals.pop())):
        raise BadKey(BAD_KEY_MESSAGE)
    return b"".join(found[i] for i in range(len(found)))


# --------------------------------------------------------------------------------------------------
# Other formats and dispatch


def sidecar_path(out_path: str | Path) -> Path:
    """Where the payload of a format without a place for it goes: ``<name>.facedeid-payload``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + SIDECAR_SUFFIX)


def _kind(fmt: str | None, data: bytes | None) -> str:
    if fmt:
        name = fmt.lower().lstrip(".")
        return {"jpg": "jpeg", "jpe": "jpeg", "jfif": "jpeg"}.get(name, name)
    if data is not None and data.startswith(PNG_SIGNATURE):
        return "png"
    if data is not None and data.startswith(b"\xff\xd8"):
        return "jpeg"
    return "other"


def embed(target: str | Path | bytes, fmt: str | None, blob: bytes) -> bytes | Path:
    """Attach ``blob`` to an image.

    Bytes in → bytes out (PNG or JPEG only). A path → the PNG/JPEG file is rewritten atomically with
    the payload inside and its path returned; any other format gets a sidecar file, whose path is
    returned. ``fmt`` ("png", "jpeg", "webp", …) defaults to the file's content.
    """
    if isinstance(target, (bytes, bytearray, memoryview)):
        data = bytes(target)
        kind = _kind(fmt, data)
        if kind == "png":
            return embed_png(data, blob)
        if kind == "jpeg":
            return embed_jpeg(data, blob)
        raise BadArguments(f"a {kind} image carries its payload in a sidecar file: pass the output path")
    path = Path(target)
    if not path.is_file():
        raise BadArguments(f"{path}: no such image to attach the payload to")
    kind = _kind(fmt, path.read_bytes() if fmt is None else None)
    if kind in ("png", "jpeg"):
        data = path.read_bytes()
        write_atomic(path, embed_png(data, blob) if kind == "png" else embed_jpeg(data, blob))
        return path
    side = sidecar_path(path)
    write_atomic(side, bytes(blob))
    return side


def extract(target: str | Path | bytes, fmt: str | None = None) -> bytes | None:
    """The blob attached by :func:`embed` (from the PNG chunk, the JPEG segments or the sidecar), or None."""
    if isinstance(target, (bytes, bytearray, memoryview)):
        data = bytes(target)
        kind = _kind(fmt, data)
        if kind == "png":
            return extract_png(data)
        if kind == "jpeg":
            return extract_jpeg(data)
        return None
    path = Path(target)
    data = path.read_bytes() if path.exists() else None
    kind = _kind(fmt, data)
    blob = None
    if data is not None and kind == "png":
        blob = extract_png(data)
    elif data is not None and kind == "jpeg":
        blob = extract_jpeg(data)
    side = sidecar_path(path)
    if blob is None and side.exists():
        blob = side.read_bytes()
    return blob


# --------------------------------------------------------------------------------------------------
# MP4 / MOV (ISO base media file format): a top-level 'uuid' box appended to the file

#: The extended type of facedeid's box (a fixed UUID; players skip top-level boxes they do not know).
MP4_UUID = bytes.fromhex("6664656964a0491b9d2c5061796c6f61")
MP4_SUFFIXES = (".mp4", ".m4v", ".mov")
_BOX = struct.Struct(">I4s")
_COPY_CHUNK = 1 << 20


def mp4_boxes(path: str | Path) -> list[tuple[bytes, int, int, int]]:
    """The top-level boxes of an ISO-BMFF file: (type, offset, header length, total size).
    UnsupportedMedia when the file is not one (a box runs past the end or has a bad size)."""
    path = Path(path)
    size = path.stat().st_size
    out: list[tuple[bytes, int, int, int]] = []
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(_BOX.size)
            if len(head) < _BOX.size:
                raise UnsupportedMedia(f"{path}: truncated MP4 box at byte {pos}")
            n, kind = _BOX.unpack(head)
            header = _BOX.size
            if n == 1:
                large = f.read(8)
                if len(large) < 8:
                    raise UnsupportedMedia(f"{path}: truncated MP4 box at byte {pos}")
                n, header = struct.unpack(">Q", large)[0], header + 8
            elif n == 0:
                n = size - pos
            if kind == b"uuid":
                header += 16
            if n < header or pos + n > size:
                raise UnsupportedMedia(f"{path}: bad MP4 box size at byte {pos}")
            out.append((kind, pos, header, n))
            pos += n
    return out


def _our_box(path: Path) -> tuple[int, int] | None:
    """(offset, length) of the data of facedeid's uuid box, or None."""
    with open(path, "rb") as f:
        for kind, pos, header, n in mp4_boxes(path):
            if kind == b"uuid":
                f.seek(pos + header - 16)
                if f.read(16) == MP4_UUID:
                    return pos + header, n - header
    return None


def embed_mp4_file(path: str | Path, payload_file: str | Path) -> None:
    """Append the bytes of ``payload_file`` to the MP4/MOV ``path`` as facedeid's uuid box, atomically
    (a copy with the box is renamed over ``path``); refuses a file that already carries one."""
    path, payload_file = Path(path), Path(payload_file)
    if path.suffix.lower() not in MP4_SUFFIXES:
        raise BadArguments(f"{path}: only MP4/MOV outputs can carry the payload inside (use the sidecar)")
    if _our_box(path) is not None:
        raise BadArguments(f"{path}: already carries a facedeid payload")
    length = payload_file.stat().st_size
    header = struct.pack(">I4sQ", 1, b"uuid", _BOX.size + 8 + 16 + length) + MP4_UUID
    fd, tmp = tempfile.mkstemp(prefix=".facedeid-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src, open(payload_file, "rb") as blob:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
            out.write(header)
            shutil.copyfileobj(blob, out, _COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_mp4_file(path: str | Path, dst: str | Path) -> bool:
    """Copy the data of facedeid's uuid box of ``path`` into ``dst`` (streamed); False when there is
    none (or ``path`` is not an ISO-BMFF file)."""
    path = Path(path)
    if path.suffix.lower() not in MP4_SUFFIXES or not path.is_file():
        return False
    try:
        found = _our_box(path)
    except UnsupportedMedia:
        return False
    if found is None:
        return False
    offset, length = found
    with open(path, "rb") as src, open(dst, "wb") as out:
        src.seek(offset)
        while length > 0:
            chunk = src.read(min(_COPY_CHUNK, length))
            if not chunk:
                raise UnsupportedMedia(f"{path}: truncated payload box")
            out.write(chunk)
            length -= len(chunk)
    return True
