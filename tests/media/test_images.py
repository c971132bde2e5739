import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facedeid.errors import UnsupportedMedia
from facedeid.media.images import decode_image, encode_image, read_image, write_atomic


def _jpeg_with_gps_and_thumbnail(rgb: np.ndarray) -> bytes:
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x010F] = "SecretCamMaker"  # Make
    exif[0x0131] = "SecretSoftware"
    gps = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x8825] = gps
    buf = io.BytesIO()
    thumb = io.BytesIO()
    img.resize((64, 64)).save(thumb, format="JPEG")
    img.save(buf, format="JPEG", exif=exif.tobytes(), comment=b"SecretComment", quality=90)
    data = buf.getvalue()
    # splice a second APP1 with an XMP packet mentioning a secret
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>SecretXMP</x:xmpmeta>"
    seg = b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
    return data[:2] + seg + data[2:] + b""  # thumbnail added by Pillow's exif writer is not guaranteed


def test_metadata_is_removed(face_image, tmp_path):
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg_with_gps_and_thumbnail(face_image))
    assert b"SecretCamMaker" in src.read_bytes() and b"SecretXMP" in src.read_bytes()
    dec = read_image(src)
    out = encode_image(dec, dec.rgb)
    for secret in (b"SecretCamMaker", b"SecretSoftware", b"SecretComment", b"SecretXMP", b"Exif\x00\x00", b"GPS"):
        assert secret not in out
    assert out.count(b"\xff\xd8") == 1  # a single JPEG: no embedded thumbnail


def test_exif_thumbnail_is_not_carried(face_image, tmp_path):
    # A real EXIF thumbnail: an IFD1 with a JPEG inside the APP1 segment.
    thumb = io.BytesIO()
    Image.fromarray(face_image).resize((40, 40)).save(thumb, format="JPEG")
    t = thumb.getvalue()
    ifd0 = struct.pack("<H", 0) + struct.pack("<I", 26)
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, 8 + 2 + 4 + 2 + 24 + 4 + 0) + struct.pack("<HHII", 0x0202, 4, 1, len(t)) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + b"\x00" * (26 - 14) + ifd1
    # fix the JPEG offset to point right after IFD1
    off = len(tiff)
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, off) + struct.pack("<HHII", 0x0202, 4, 1, len(t)) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + b"\x00" * (26 - 14) + ifd1 + t
    app1 = b"Exif\x00\x00" + tiff
    buf = io.BytesIO()
    Image.fromarray(face_image).save(buf, format="JPEG")
    data = buf.getvalue()
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    assert data.count(b"\xff\xd8") == 2
    src = tmp_path / "thumb.jpg"
    src.write_bytes(data)
    out = encode_image(read_image(src), read_image(src).rgb)
    assert out.count(b"\xff\xd8") == 1 and b"Exif" not in out


def test_icc_profile_is_kept(face_image):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    Image.fromarray(face_image).save(buf, format="PNG", icc_profile=icc)
    dec = decode_image(buf.getvalue())
    assert Image.open(io.BytesIO(encode_image(dec, dec.rgb))).info.get("icc_profile") == icc


def test_exif_orientation_is_applied(face_image):
    img = Image.fromarray(face_image[:, :200])  # 250 high, 200 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    dec = decode_image(buf.getvalue())
    assert dec.rgb.shape[:2] == (200, 250) and dec.transposed


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK"])
def test_colour_mode_and_alpha_are_kept(face_image, mode):
    base = Image.fromarray(face_image)
    if mode in ("RGBA", "LA"):
        alpha = Image.fromarray(np.tile(np.arange(250, dtype=np.uint8), (250, 1)))
        img = base.convert("RGBA")
        img.putalpha(alpha)
        img = img.convert(mode)
    else:
        img = base.convert(mode)
    buf = io.BytesIO()
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img.save(buf, format=fmt)
    dec = decode_image(buf.getvalue())
    changed = dec.rgb.copy()
    changed[50:100, 50:100] = 0
    out = Image.open(io.BytesIO(encode_image(dec, changed)))
    assert out.mode == mode and out.size == img.size and out.format == fmt
    if mode in ("RGBA", "LA"):
        assert np.array_equal(np.asarray(out)[..., -1], np.asarray(img)[..., -1])


def test_sixteen_bit_keeps_untouched_pixels(face_image):
    gray16 = (np.asarray(Image.fromarray(face_image).convert("L"), dtype=np.uint16) * 257 + 3).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(gray16).save(buf, format="PNG")
    dec = decode_image(buf.getvalue())
    changed = dec.rgb.copy()
    changed[:20, :20] = 0
    out = np.asarray(Image.open(io.BytesIO(encode_image(dec, changed))))
    assert out.dtype == np.uint16
    assert np.array_equal(out[30:, 30:], gray16[30:, 30:]) and out[:20, :20].max() == 0


def _png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data,needle",
    [
        (b"", "empty file"),
        (b"hello, this is text\n" * 10, "not an image"),
        (_png_header_only(30000, 30000), "too large"),
    ],
    ids=["zero-byte", "text", "bomb"],
)
def test_bad_inputs_raise_one_line_errors(data, needle):
    with pytest.raises(UnsupportedMedia) as exc:
        decode_image(data, "x.jpg")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_truncated_jpeg(face_image):
    buf = io.BytesIO()
    Image.fromarray(face_image).save(buf, format="JPEG")
    with pytest.raises(UnsupportedMedia, match="truncated|corrupt|cannot read"):
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2], "half.jpg")


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    write_atomic(target, b"x" * 10)
    assert target.read_bytes() == b"x" * 10
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]
