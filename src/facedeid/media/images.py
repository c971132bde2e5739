"""Image decoding and encoding.

Decoding applies the EXIF orientation, checks the pixel count *before* decoding, and turns every
supported colour mode into an RGB uint8 working array plus what is needed to restore the mode.
Encoding keeps the format, size and colour mode, keeps only the ICC profile (no EXIF, GPS,
thumbnails, XMP, IPTC or comments) and writes atomically.
"""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import OutputError, UnsupportedMedia

MAX_PIXELS = 120_000_000  # refuse larger images (decompression bombs); configurable per call
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".pnm"}
_SAVE_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM"}


@dataclass
class DecodedImage:
    """A decoded image: ``rgb`` is what detectors and methods see (H×W×3 uint8).

    ``mode`` is the source colour mode, ``alpha`` its untouched alpha channel (if any),
    ``high`` the 16-bit grayscale original (``I;16`` images), ``icc`` the ICC profile to keep.
    """

    rgb: np.ndarray
    mode: str
    format: str
    alpha: np.ndarray | None = None
    high: np.ndarray | None = None
    icc: bytes | None = None
    transposed: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    if not data:
        raise UnsupportedMedia(f"{name}: empty file")
    prev = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # checked below against our own limit, with a clear message
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedMedia(f"{name}: not an image (unrecognised content)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedMedia(f"{name}: cannot read image ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = prev
    w, h = img.size
    if w * h > max_pixels:
        raise UnsupportedMedia(f"{name}: image too large ({w}×{h} = {w * h / 1e6:.0f} MP > {max_pixels / 1e6:.0f} MP limit)")
    if w == 0 or h == 0:
        raise UnsupportedMedia(f"{name}: image has no pixels")
    return img


def _load(img: Image.Image, name: str) -> Image.Image:
    prev = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our own limit was checked from the header
        img.load()
        if getattr(img, "is_animated", False) and getattr(img, "n_frames", 1) > 1:
            raise UnsupportedMedia(f"{name}: animated images are not supported (use the video path)")
        return ImageOps.exif_transpose(img) or img
    except UnsupportedMedia:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedMedia(f"{name}: corrupt or truncated image ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = prev


def _to_working(img: Image.Image, name: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """RGB uint8 array, alpha channel (or None) and 16-bit original (or None) for a PIL image."""
    mode = img.mode
    if mode in ("RGB", "L"):
        arr = np.asarray(img.convert("RGB"))
        return arr, None, None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), None
    if mode in ("P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB")), None, None
    if mode in ("I;16", "I;16L", "I;16B", "I"):
        high = np.asarray(img, dtype=np.uint32 if mode == "I" else np.uint16)
        if mode == "I" and high.max(initial=0) > 65535:
            raise UnsupportedMedia(f"{name}: 32-bit integer images are not supported")
        high = high.astype(np.uint16)
        low = np.round(high / 257.0).astype(np.uint8)
        return np.stack([low] * 3, axis=-1), None, high
    raise UnsupportedMedia(f"{name}: unsupported colour mode {mode}")


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode image bytes (see module doc). Raises :class:`UnsupportedMedia` with a one-line reason."""
    img = _open(data, name, max_pixels)
    fmt = img.format or "PNG"
    icc = img.info.get("icc_profile")
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    mode = img.mode
    img = _load(img, name)
    rgb, alpha, high = _to_working(img, name)
    return DecodedImage(np.ascontiguousarray(rgb), mode, fmt, alpha, high, icc, orientation not in (1, None))


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Read and decode an image file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnsupportedMedia(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path), max_pixels)


def _restore_mode(dec: DecodedImage, rgb: np.ndarray) -> Image.Image:
    """Turn the processed RGB array back into the source colour mode."""
    mode = dec.mode
    if dec.high is not None:
        # 16-bit: only changed pixels take the 8-bit result (scaled); the others keep all 16 bits.
        changed = np.any(rgb != dec.rgb, axis=-1)
        gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16) * 257
        out = np.where(changed, gray, dec.high).astype(np.uint16)
        return Image.fromarray(out)
    base = Image.fromarray(rgb, "RGB")
    if dec.alpha is not None:
        rgba = Image.fromarray(np.dstack([rgb, dec.alpha]), "RGBA")
        if mode == "LA":
            return rgba.convert("LA")
        if mode in ("P", "PA"):
            return rgba.quantize(256) if dec.format != "GIF" else rgba.convert("P", palette=Image.Palette.ADAPTIVE)
        return rgba
    if mode in ("L", "1", "P", "CMYK"):
        if mode == "P":
            return base.quantize(256)
        return base.convert(mode)
    return base


def encode_image(dec: DecodedImage, rgb: np.ndarray, fmt: str | None = None, quality: int = 95) -> bytes:
    """Encode ``rgb`` in the source's format and mode with no metadata except the ICC profile."""
    fmt = (fmt or dec.format).upper()
    if fmt == "MPO":
        fmt = "JPEG"
    if fmt not in _SAVE_FORMATS:
        fmt = "PNG"
    img = _restore_mode(dec, rgb)
    kwargs: dict = {}
    if dec.icc and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = dec.icc
    if fmt == "JPEG":
        if img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
        kwargs.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
    elif fmt == "WEBP":
        kwargs.update(quality=quality, method=4)
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_lzw")
    elif fmt == "PPM" and img.mode not in ("RGB", "L", "1", "I"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".facedeid-", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
