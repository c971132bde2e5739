"""The encrypted exact-recovery payload (issue 7, item 3) in real PNG and JPEG files."""
import io
import os
import re
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from facedeid.bench.datasets import lfw_images
from facedeid.errors import BadArguments, BadKey
from facedeid.media import payload as P
from facedeid.media.images import read_image

PASSWORD = "open sesame 42"
BOX = (60, 70, 190, 180)  # y0, x0, y1, x1 around the face of a 250×250 LFW image


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return read_image(lfw_images()[0]).rgb


@pytest.fixture(scope="module")
def sealed(face):
    """(de-identified image, original patch, packed patch bytes, sealed blob)."""
    y0, x0, y1, x1 = BOX
    patch = face[y0:y1, x0:x1].copy()
    deid = face.copy()
    deid[y0:y1, x0:x1] = cv2.GaussianBlur(patch, (31, 31), 12)
    packed = P.pack_patches([(y0, x0, patch)])
    return deid, patch, packed, P.seal(packed, PASSWORD)


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return enc.tobytes()


def decode_both(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    cv = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return pil, cv


# -------------------------------------------------------------------------------------- encryption


def test_seal_round_trip_and_randomised_header():
    blob = P.seal(b"hello world", PASSWORD)
    assert blob.startswith(b"FDRP") and len(blob) == P.HEADER_BYTES + 11 + P.TAG_BYTES
    assert P.unseal(blob, PASSWORD) == b"hello world"
    assert P.seal(b"hello world", PASSWORD)[5:] != blob[5:]  # fresh salt and nonce every time
    assert P.unseal(P.seal(b"n", 1234), "1234") == b"n"  # numeric passwords


def test_wrong_password_and_tampering_raise_the_same_bad_key(sealed):
    blob = sealed[3]
    with pytest.raises(BadKey) as wrong:
        P.unseal(blob, "open sesame 43")
    messages = {str(wrong.value)}
    for pos in (0, 5, 7, P.HEADER_BYTES - 1, P.HEADER_BYTES + 100, len(blob) - 1):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(BadKey) as err:
            P.unseal(bytes(bad), PASSWORD)
        messages.add(str(err.value))
    for bad in (blob[:-1], blob[:20], b"", blob + b"\x00"):
        with pytest.raises(BadKey) as err:
            P.unseal(bad, PASSWORD)
        messages.add(str(err.value))
    assert len(messages) == 1 and BadKey.exit_code == 6


def test_the_payload_holds_no_plaintext_pixels(sealed):
    _, patch, packed, blob = sealed
    raw = patch.tobytes()
    for start in range(0, len(raw) - 24, len(raw) // 16):
        assert raw[start : start + 24] not in blob
    for start in range(0, len(packed) - 24, max(1, len(packed) // 16)):
        assert packed[start : start + 24] not in blob


# ----------------------------------------------------------------------------------------- patches


def test_patches_round_trip_losslessly():
    rng = np.random.default_rng(0)
    patches = [
        (3, 4, rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)),
        (0, 0, rng.integers(0, 65536, (6, 2), dtype=np.uint16)),
        (10, 1, rng.integers(0, 256, (1, 1, 4), dtype=np.uint8)),
    ]
    back = P.unpack_patches(P.pack_patches(patches))
    assert len(back) == 3
    for (y, x, a), (y2, x2, b) in zip(patches, back):
        assert (y, x) == (y2, x2) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for bad in ([(0, 0, np.zeros((2, 2), np.float32))], [(0, 0, np.zeros(4, np.uint8))], [(-1, 0, np.zeros((2, 2), np.uint8))]):
        with pytest.raises(BadArguments):
            P.pack_patches(bad)


def test_apply_patches_copies_and_checks_bounds():
    img = np.zeros((8, 8, 3), np.uint8)
    patch = np.full((2, 3, 3), 7, np.uint8)
    out = P.apply_patches(img, [(5, 4, patch)])
    assert img.sum() == 0 and (out[5:7, 4:7] == 7).all() and out.sum() == 7 * 18
    with pytest.raises(BadArguments):
        P.apply_patches(img, [(7, 0, patch)])
    with pytest.raises(BadArguments):
        P.apply_patches(img, [(0, 0, patch[..., 0])])


# ---------------------------------------------------------------------------------------- containers


def test_png_round_trip_restores_the_original_exactly(face, sealed):
    deid, _, _, blob = sealed
    plain = png_bytes(deid)
    carried = P.embed_png(plain, blob)
    assert P.PNG_CHUNK in carried and P.extract_png(plain) is None
    for decoded in decode_both(carried):
        np.testing.assert_array_equal(decoded, deid)  # embedding changes no pixel
    got = P.extract_png(carried)
    assert got == blob
    restored = P.apply_patches(decode_both(carried)[0], P.unpack_patches(P.unseal(got, PASSWORD)))
    np.testing.assert_array_equal(restored, face)
    # embedding again replaces the chunk instead of adding a second one
    again = P.embed_png(carried, b"other")
    assert again.count(P.PNG_CHUNK) == 1 and P.extract_png(again) == b"other"
    with pytest.raises(BadKey):
        P.unseal(got, "not the password")


def test_png_chunk_has_a_valid_crc(sealed):
    carried = P.embed_png(png_bytes(sealed[0]), b"xyz")
    pos = carried.index(P.PNG_CHUNK) - 4
    (length,) = struct.unpack_from(">I", carried, pos)
    body = carried[pos + 4 : pos + 8 + length]
    assert struct.unpack_from(">I", carried, pos + 8 + length)[0] == zlib.crc32(body)
    assert carried.endswith(b"IEND\xaeB`\x82")


def test_jpeg_round_trip(face, sealed):
    deid, patch, _, blob = sealed
    plain = jpeg_bytes(deid)
    carried = P.embed_jpeg(plain, blob)
    assert P.extract_jpeg(plain) is None
    assert carried[:4] == b"\xff\xd8\xff\xe0"  # JFIF APP0 still first
    for before, after in zip(decode_both(plain), decode_both(carried)):
        np.testing.assert_array_equal(before, after)
    got = P.extract_jpeg(carried)
    assert got == blob
    restored = P.apply_patches(decode_both(carried)[1], P.unpack_patches(P.unseal(got, PASSWORD)))
    y0, x0, y1, x1 = BOX
    np.testing.assert_array_equal(restored[y0:y1, x0:x1], face[y0:y1, x0:x1])  # the face is exact again


def test_large_payload_is_split_over_app11_segments(sealed):
    blob = P.seal(os.urandom(300_000), PASSWORD)
    plain = jpeg_bytes(sealed[0])
    carried = P.embed_jpeg(plain, blob)
    starts = [m.start() - 4 for m in re.finditer(re.escape(P.JPEG_IDENT), carried)]
    assert len(starts) == 5 and all(carried[s : s + 2] == b"\xff\xeb" for s in starts)
    assert all(struct.unpack_from(">H", carried, s + 2)[0] <= 2 + len(P.JPEG_IDENT) + 4 + 65_000 for s in starts)
    for before, after in zip(decode_both(plain), decode_both(carried)):
        np.testing.assert_array_equal(before, after)
    assert P.extract_jpeg(carried) == blob
    assert len(P.unseal(P.extract_jpeg(carried), PASSWORD)) == 300_000
    # re-embedding replaces all pieces
    assert P.extract_jpeg(P.embed_jpeg(carried, b"small")) == b"small"
    # a removed piece is detected
    second = carried.index(P.JPEG_IDENT, carried.index(P.JPEG_IDENT) + 1) - 4
    (length,) = struct.unpack_from(">H", carried, second + 2)
    with pytest.raises(BadKey):
        P.extract_jpeg(carried[:second] + carried[second + 2 + length :])


def test_jpeg_with_exif_keeps_app1_before_the_payload(sealed):
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "description"
    Image.fromarray(sealed[0]).save(buf, format="JPEG", quality=90, exif=exif)
    carried = P.embed_jpeg(buf.getvalue(), b"payload")
    assert carried.index(b"Exif\x00\x00") < carried.index(P.JPEG_IDENT)
    assert Image.open(io.BytesIO(carried)).getexif()[0x010E] == "description"
    assert P.extract_jpeg(carried) == b"payload"


def test_dispatch_by_format_and_sidecar(tmp_path, sealed):
    deid, _, _, blob = sealed
    png_path, jpg_path, webp_path = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.webp"
    png_path.write_bytes(png_bytes(deid))
    jpg_path.write_bytes(jpeg_bytes(deid))
    Image.fromarray(deid).save(webp_path, lossless=True)
    assert P.extract(png_path) is None
    assert P.embed(png_path, None, blob) == png_path and P.extract(png_path) == blob
    assert P.embed(jpg_path, "jpeg", blob) == jpg_path and P.extract(jpg_path) == blob
    side = P.embed(webp_path, None, blob)
    assert side == tmp_path / "c.webp.facedeid-payload" == P.sidecar_path(webp_path)
    assert P.extract(webp_path) == blob and P.extract(webp_path, "webp") == blob
    assert P.embed(png_bytes(deid), "png", b"x") != png_bytes(deid) and P.extract(P.embed(jpeg_bytes(deid), "jpg", b"x")) == b"x"
    with pytest.raises(BadArguments):
        P.embed(b"RIFF....WEBP", "webp", blob)


# -------------------------------------------------------------------------------------- MP4 / MOV


def test_mp4_box_round_trip_keeps_the_video_playable(tmp_path, sealed, data):
    """The payload appended as a top-level uuid box: the same frames and audio decode, the box
    comes back byte for byte, a second payload and non-MP4 outputs are refused."""
    import shutil

    from facedeid.errors import UnsupportedMedia
    from facedeid.media.video import probe, read_frames

    clip = tmp_path / "clip.mp4"
    shutil.copyfile(data / "videos" / "lp_driving_d19.mp4", clip)
    before = probe(clip)
    first = next(read_frames(clip))[2]
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(sealed[3])
    assert not P.extract_mp4_file(clip, tmp_path / "none")
    P.embed_mp4_file(clip, blob_file)
    assert [b[0] for b in P.mp4_boxes(clip)][-1] == b"uuid"
    assert P.extract_mp4_file(clip, tmp_path / "out") and (tmp_path / "out").read_bytes() == sealed[3]
    after = probe(clip)
    assert (after.width, after.height, after.frames, bool(after.audio)) == (before.width, before.height, before.frames, bool(before.audio))
    assert np.array_equal(next(read_frames(clip))[2], first)
    with pytest.raises(BadArguments):
        P.embed_mp4_file(clip, blob_file)
    with pytest.raises(BadArguments):
        P.embed_mp4_file(tmp_path / "x.mkv", blob_file)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:-10])  # the box now runs past the end of the file
    with pytest.raises(UnsupportedMedia):
        P.mp4_boxes(cut)
    assert not P.extract_mp4_file(cut, tmp_path / "cut_out")
