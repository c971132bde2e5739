"""The data path for video: decode → track faces → method per face → encode (audio copied).

Any image method runs on video through the tracks. Each track keeps stable method parameters: its
noise comes from a per-track secret seed, so every frame of a track shows the same noise realisation
(fresh noise per frame would let an attacker average it away over many frames). A frame where a
track was held without a detection is reported as uncertain and still anonymized (widened box).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .faces.detect import DEFAULT_DETECTOR
from .faces.landmarks import with_landmarks68
from .faces.track import Tracker
from .media.images import write_atomic
from .media.video import TranscodeReport, probe, transcode
from .methods.base import Context, Method
from .privacy.randomness import PrivacyRandom


@dataclass
class VideoReport:
    source: str
    output: str
    method: str
    detector: str
    frames: int = 0
    frames_with_faces: int = 0
    uncertain_frames: list[int] = field(default_factory=list)
    tracks: int = 0
    seconds: float = 0.0
    input: dict[str, Any] = field(default_factory=dict)
    output_info: dict[str, Any] = field(default_factory=dict)
    transcode: dict[str, Any] = field(default_factory=dict)
    per_frame: list[dict[str, Any]] = field(default_factory=list)


def anonymize_video(src: str | Path, dst: str | Path, method: Method, detector: str = DEFAULT_DETECTOR, detect_every: int = 1,
                    quality: int = 18, keep_partial: bool = False, report_path: str | Path | None = None,
                    on_frame: Callable[[int], None] | None = None) -> VideoReport:
    """Anonymize every tracked face of every frame of ``src`` into ``dst``; ``on_frame(i)`` is
    called after each frame (progress; it may raise to cancel, and then nothing is written)."""
    import time

    src, dst = Path(src), Path(dst)
    info = probe(src)
    tracker = Tracker(detector, detect_every=detect_every)
    rep = VideoReport(str(src), str(dst), method.spec(), detector, input=asdict(info))
    needs68 = getattr(method, "needs_68", False) or getattr(method.params, "region", "") == "hull"
    seen: set[int] = set()

    def per_frame(i: int, t: float, rgb: np.ndarray) -> np.ndarray:
        ff = tracker.update(i, rgb)
        out = rgb
        for face, track in zip(ff.faces, tracker.tracks):
            if needs68:
                face = with_landmarks68(rgb, face)
            out = method.apply(out, [face], Context(rng=PrivacyRandom.for_track(track.secret))).image
            seen.add(track.id)
        rep.per_frame.append({"frame": i, "time": round(t, 4), "faces": len(ff.faces), "uncertain": ff.uncertain,
                              "held_tracks": ff.held, "detector_ran": ff.detected,
                              "boxes": [f.box.to_list() for f in ff.faces]})
        rep.frames_with_faces += bool(ff.faces)
        if ff.uncertain:
            rep.uncertain_frames.append(i)
        if on_frame is not None:
            on_frame(i)
        return out

    t0 = time.perf_counter()
    tr: TranscodeReport = transcode(src, dst, per_frame, quality=quality, keep_partial=keep_partial)
    rep.seconds = time.perf_counter() - t0
    rep.frames, rep.tracks, rep.transcode = tr.frames, len(seen), asdict(tr)
    rep.output_info = asdict(probe(dst))
    if report_path is not None:
        write_atomic(report_path, json.dumps(asdict(rep), indent=1, default=str).encode())
    return rep
