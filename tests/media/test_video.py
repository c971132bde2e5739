"""Video I/O, tracking and the video data path on real clips from ../shared/data/videos."""
from __future__ import annotations

import av
import numpy as np
import pytest

from facedeid.errors import UnsupportedMedia
from facedeid.faces.track import Tracker
from facedeid.media.video import probe, read_frames, transcode
from facedeid.pipeline import resolve_method
from facedeid.video_pipeline import anonymize_video


def _times(path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(c.streams.video[0])]


def _audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.fixture(scope="module")
def clips(data):
    return data / "videos"


def test_passthrough_keeps_size_rate_timestamps_audio_and_drops_metadata(clips, tmp_path):
    src = clips / "lp_driving_d12.mp4"  # 512×512, 25 fps, AAC, container creation_time
    dst = tmp_path / "out.mp4"
    rep = transcode(src, dst, lambda i, t, f: f)
    a, b = probe(src), probe(dst)
    assert (b.width, b.height, b.fps, b.audio) == (a.width, a.height, a.fps, a.audio)
    assert rep.frames == a.frames == len(_times(dst)) and rep.audio_streams_copied == 1
    assert np.allclose(_times(src), _times(dst), atol=1e-3)
    assert _audio_packets(src) == _audio_packets(dst)  # audio copied, not re-encoded
    with av.open(str(dst)) as c:
        tags = {**c.metadata, **c.streams.video[0].metadata}
    assert "creation_time" not in tags


def test_odd_size_is_not_padded(tmp_path):
    src = tmp_path / "odd.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 101, 75, "yuv444p"
        for i in range(5):
            fr = av.VideoFrame.from_ndarray(np.full((75, 101, 3), 20 * i, np.uint8), format="rgb24")
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    transcode(src, tmp_path / "o.mp4", lambda i, t, f: f)
    info = probe(tmp_path / "o.mp4")
    assert (info.width, info.height, info.frames) == (101, 75, 5)


def test_truncated_video(clips, tmp_path):
    data = (clips / "fr_short_hamilton_clip.mp4").read_bytes()
    cut = tmp_path / "half.mp4"  # an MP4 cut in half loses its index: nothing is decodable
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedMedia):
        transcode(cut, tmp_path / "no.mp4", lambda i, t, f: f)
    assert not (tmp_path / "no.mp4").exists()
    full = tmp_path / "full.mkv"  # Matroska streams its index: a cut file still decodes up to the cut
    transcode(clips / "fr_short_hamilton_clip.mp4", full, lambda i, t, f: f)
    bad = tmp_path / "half.mkv"
    bad.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UnsupportedMedia, match="truncated"):
        transcode(bad, tmp_path / "no.mkv", lambda i, t, f: f)
    assert not (tmp_path / "no.mkv").exists()
    rep = transcode(bad, tmp_path / "part.mkv", lambda i, t, f: f, keep_partial=True)
    assert rep.truncated and 0 < len(list(read_frames(tmp_path / "part.mkv"))) <= rep.frames < 275
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UnsupportedMedia):
        probe(tmp_path / "empty.mp4")


def test_video_anonymization_covers_faces_and_keeps_background(clips, tmp_path):
    src = clips / "lp_driving_d19.mp4"  # 480×480 talking head, AAC
    dst = tmp_path / "anon.mp4"
    rep = anonymize_video(src, dst, resolve_method("pixelate"), detector="centerface", detect_every=3, report_path=tmp_path / "r.json")
    assert rep.frames == probe(src).frames and rep.frames_with_faces >= 0.95 * rep.frames
    assert rep.output_info["width"] == 480 and rep.output_info["audio"] == ("aac",)
    orig = {i: f for i, _, f in read_frames(src) if i in (30, 120)}
    anon = {i: f for i, _, f in read_frames(dst) if i in (30, 120)}
    for i in (30, 120):
        box = rep.per_frame[i]["boxes"][0]
        x0, y0, x1, y1 = (int(v) for v in box)
        face_diff = np.abs(orig[i][y0:y1, x0:x1].astype(int) - anon[i][y0:y1, x0:x1]).mean()
        corner_diff = np.abs(orig[i][:40, :40].astype(int) - anon[i][:40, :40]).mean()
        assert face_diff > 8 and corner_diff < 3
    assert (tmp_path / "r.json").stat().st_size > 1000


def test_tracker_holds_a_lost_face_and_flags_the_frame(clips):
    frames = [f for i, _, f in read_frames(clips / "lp_driving_d19.mp4") if i < 6]
    frames[3] = np.full_like(frames[3], 128)  # the face vanishes for one frame
    tr = Tracker("centerface", hold=4)
    out = [tr.update(i, f) for i, f in enumerate(frames)]
    assert all(len(o.faces) == 1 for o in out)  # still covered on the blank frame
    assert out[3].uncertain and out[3].held and not out[2].uncertain
    assert len({o.faces[0].track_id for o in out}) == 1


def _face_clip(path, face_rgb: np.ndarray, frames: int = 12) -> None:
    """A short MP4 of a real face photo with a 440 Hz AAC track."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=12)
        v.width, v.height, v.pix_fmt = face_rgb.shape[1], face_rgb.shape[0], "yuv420p"
        a = c.add_stream("aac", rate=44100)
        for i in range(frames):
            for p in v.encode(av.VideoFrame.from_ndarray(np.roll(face_rgb, i, axis=1), format="rgb24")):
                c.mux(p)
        t = np.arange(44100) / 44100
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        af.sample_rate = 44100
        for p in a.encode(af):
            c.mux(p)
        for s in (v, a):
            for p in s.encode(None):
                c.mux(p)


def test_cli_anonymizes_a_video_with_its_audio(face_image, tmp_path):
    from facedeid.cli import main

    src = tmp_path / "in" / "clip.mp4"
    src.parent.mkdir()
    _face_clip(src, face_image[:248, :248])
    assert main(["anonymize", str(src.parent), "-o", str(tmp_path / "out"), "--method", "blur", "--param", "r=20", "-q"]) == 0
    out = tmp_path / "out" / "clip.mp4"
    info = probe(out)
    assert (info.width, info.height, info.frames, info.audio) == (248, 248, 12, ("aac",))
    assert (tmp_path / "out" / "clip.mp4.facedeid.json").is_file()
    first = next(read_frames(out))[2].astype(int)
    assert np.abs(first[100:150, 100:150] - face_image[100:150, 100:150]).mean() > 5
