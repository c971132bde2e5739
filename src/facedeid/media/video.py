"""Video decoding and encoding with PyAV (FFmpeg libraries from PyPI wheels).

Streaming, frame by frame: memory does not grow with the video's length. The output keeps the
resolution (odd sizes are encoded 4:4:4 rather than padded), every frame's timestamp (so variable
frame rates survive), the rotation tag, and every audio stream copied without re-encoding
(re-encoded to AAC only where the container cannot carry the codec). Container and stream metadata
are not copied. The file is written to a temporary name and renamed at the end.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from ..errors import OutputError, UnsupportedMedia

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm"}
FrameFn = Callable[[int, float, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction | None
    frames: int
    codec: str
    audio: tuple[str, ...]
    rotation: int
    duration_s: float


def _rotation(stream: "av.video.stream.VideoStream") -> int:
    """Display rotation in degrees from the stream's tag or display matrix (0 when absent)."""
    tag = stream.metadata.get("rotate")
    if tag:
        return int(float(tag)) % 360
    for sd in (getattr(stream, "side_data", None) or {}).values() if isinstance(getattr(stream, "side_data", None), dict) else []:
        rot = getattr(sd, "rotation", None)
        if rot is not None:
            return int(round(-float(rot))) % 360
    return 0


def _open(path: Path) -> "av.container.InputContainer":
    if not path.is_file() or path.stat().st_size == 0:
        raise UnsupportedMedia(f"{path}: empty or missing file")
    try:
        c = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise UnsupportedMedia(f"{path}: not a readable video ({exc})") from None
    if not c.streams.video:
        c.close()
        raise UnsupportedMedia(f"{path}: no video stream")
    return c


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count, codecs and rotation of a video file."""
    path = Path(path)
    with _open(path) as c:
        v = c.streams.video[0]
        dur = float(c.duration / av.time_base) if c.duration else 0.0
        return VideoInfo(v.codec_context.width, v.codec_context.height, v.average_rate, v.frames or 0, v.codec_context.name,
                         tuple(a.codec_context.name for a in c.streams.audio), _rotation(v), dur)


def read_frames(path: str | Path) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, time in seconds, RGB frame) for every decoded frame, streaming."""
    with _open(Path(path)) as c:
        v = c.streams.video[0]
        for i, frame in enumerate(c.decode(v)):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else i / float(v.average_rate or 25)
            yield i, t, frame.to_ndarray(format="rgb24")


@dataclass
class TranscodeReport:
    frames: int = 0
    audio_streams_copied: int = 0
    audio_streams_reencoded: int = 0
    truncated: bool = False
    error: str = ""
    extra: dict = field(default_factory=dict)


def _video_stream(out: "av.container.OutputContainer", v, quality: int):
    w, h = v.codec_context.width, v.codec_context.height
    s = out.add_stream("libx264", rate=v.average_rate or Fraction(25))
    s.width, s.height = w, h
    s.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
    s.time_base = v.time_base
    s.codec_context.time_base = v.time_base
    s.options = {"crf": str(quality), "preset": "veryfast"}
    rot = _rotation(v)
    if rot:
        s.metadata["rotate"] = str(rot)
    return s


def _audio_streams(out, streams) -> tuple[dict, dict]:
    """Copy each audio stream; re-encode to AAC where the container refuses the codec."""
    copied, reencode = {}, {}
    for a in streams:
        try:
            copied[a.index] = out.add_stream_from_template(a)
        except (ValueError, av.error.FFmpegError):
            s = out.add_stream("aac", rate=a.codec_context.sample_rate or 48000)
            reencode[a.index] = s
    return copied, reencode


def open_input_and_temp_output(src: Path, dst: Path) -> tuple["av.container.InputContainer", str]:
    """Open ``src`` and create a hidden temporary file beside ``dst`` (renamed onto it when done)."""
    inp = _open(src)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".facedeid-", suffix=dst.suffix or ".mp4", dir=dst.parent)
        os.close(fd)
    except OSError as exc:
        inp.close()
        raise OutputError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    return inp, tmp


def transcode(src: str | Path, dst: str | Path, fn: FrameFn, quality: int = 18, keep_partial: bool = False) -> TranscodeReport:
    """Decode ``src``, pass every RGB frame through ``fn(index, time, frame)``, encode to ``dst``.

    A corrupt or truncated input raises :class:`UnsupportedMedia` and writes nothing, unless
    ``keep_partial`` is set: then the frames decoded so far are written and the report says so.
    """
    src, dst = Path(src), Path(dst)
    rep = TranscodeReport()
    inp, tmp = open_input_and_temp_output(src, dst)
    try:
        _run(inp, tmp, fn, quality, rep)
    except Exception:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        inp.close()
    if rep.truncated and not keep_partial:
        Path(tmp).unlink(missing_ok=True)
        raise UnsupportedMedia(f"{src}: corrupt or truncated video after {rep.frames} frames ({rep.error}); --keep-partial writes what was decoded")
    os.replace(tmp, dst)
    return rep


def _run(inp, tmp: str, fn: FrameFn, quality: int, rep: TranscodeReport) -> None:
    v = inp.streams.video[0]
    with av.open(tmp, "w") as out:
        ov = _video_stream(out, v, quality)
        copied, reencode = _audio_streams(out, inp.streams.audio)
        rep.audio_streams_copied, rep.audio_streams_reencoded = len(copied), len(reencode)
        last_pts = None
        try:
            for packet in inp.demux(v, *inp.streams.audio):
                if packet.stream.type == "video":
                    for frame in packet.decode():
                        last_pts = _encode_frame(out, ov, frame, fn, rep, last_pts)
                elif packet.dts is not None:
                    _audio_packet(out, packet, copied, reencode)
        except (av.error.FFmpegError, ValueError) as exc:
            rep.truncated, rep.error = True, str(exc).splitlines()[0][:200]
        if not rep.truncated:
            _check_complete(inp, v, last_pts, rep)
        for p in ov.encode(None):
            out.mux(p)
        for s in reencode.values():
            for p in s.encode(None):
                out.mux(p)


def _check_complete(inp, v, last_pts, rep: TranscodeReport) -> None:
    """Flag a stream that ends well before the duration its header announces (a cut file)."""
    if not inp.duration or last_pts is None or not v.time_base:
        return
    announced = float(inp.duration / av.time_base)
    start = float(inp.start_time / av.time_base) if inp.start_time else 0.0
    reached = float(last_pts * v.time_base) - start
    fps = float(v.average_rate or 25)
    if reached + max(0.5, 3.0 / fps) < announced:
        rep.truncated, rep.error = True, f"stream ends at {reached:.2f} s of {announced:.2f} s"


def _encode_frame(out, ov, frame, fn: FrameFn, rep: TranscodeReport, last_pts):
    rgb = frame.to_ndarray(format="rgb24")
    pts = frame.pts if frame.pts is not None else (0 if last_pts is None else last_pts + 1)
    if last_pts is not None and pts <= last_pts:
        pts = last_pts + 1  # keep timestamps strictly increasing for the encoder
    t = float(pts * frame.time_base) if frame.time_base else rep.frames / 25.0
    new = av.VideoFrame.from_ndarray(np.ascontiguousarray(fn(rep.frames, t, rgb)), format="rgb24")
    new.pts, new.time_base = pts, frame.time_base
    for p in ov.encode(new):
        out.mux(p)
    rep.frames += 1
    return pts


def _audio_packet(out, packet, copied: dict, reencode: dict) -> None:
    idx = packet.stream.index
    if idx in copied:
        packet.stream = copied[idx]
        out.mux(packet)
    elif idx in reencode:
        for frame in packet.decode():
            frame.pts = None
            for p in reencode[idx].encode(frame):
                out.mux(p)
