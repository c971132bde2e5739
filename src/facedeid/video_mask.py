"""IdentityMask: reversible, key-controlled video de-identification (book Ch. 8.4, Algorithms 2 and 3).

**Masking** (Alg. 2), for every face track of the video:

1. *Key frame.* The first frame in which the track appears (the video's first frame for every face
   present from the start). Its face is aligned to the standard 5-point pattern by a least-squares
   similarity transform (Umeyama, Eq. 8.13–8.14, :data:`facedeid.faces.align.TEMPLATE_5`) into an
   ``ALIGN_SIZE`` crop, where the parametric model (:mod:`facedeid.model.core`) encodes it into
   the identity code z_id.
2. *Key.* The user key Ukey (a number or a string) gives the reference identity direction
   z_r = f(Ukey) by scrypt with a fixed public salt (Eq. 8.4; purpose ``"identity-mask"``).
3. *Rotation.* z_new = ‖z_id‖(z̄ cos θ + ẑ₉₀ sin θ), θ = 60° by default (Eq. 8.5–8.6), rendered in
   the aligned crop with the recognizer-guided refinement (:mod:`facedeid.model.refine`): the result
   is a pose-free :class:`~facedeid.model.core.FaceEdit` (frontal-frame landmark displacement and
   canvas-frame texture change).
4. *Motion propagation* (Ch. 8.4.3, relative motion transfer). Every later frame is NOT processed
   from scratch: the SAME edit is applied to that frame's own 68 landmarks and head pose (detected,
   or carried by Lucas–Kanade flow while the detector misses the face), so the identity
   displacement moves with the face, its expression and pose. ``propagate=False`` is the
   "w/o MF" ablation: encode, rotate and refine every frame anew.
5. *Background* (Eq. 8.19–8.20). Only the face changes: the warp is pinned by the model's fixed
   outer ring and the texture change is blended with the feathered inner-face mask, so
   I_out = M ⊙ I_render + (1 − M) ⊙ I_in with M zero outside the face region.

**Recovery** (Alg. 3), :func:`recover_video`, tried in this order:

1. *Edit payload* (default). The mask run writes a small sidecar ``<out>.facedeid-payload``,
   AES-256-GCM-sealed under the key (:func:`facedeid.media.payload.seal`): the per-track edits and
   the original 68 landmarks of every masked face. With the right key the exact inverse of every
   edit is applied (texture change subtracted, then the piecewise-affine warp inverted on the same
   meshes); what remains is the resampling blur of two warps and the codec's loss.
   ``payload="exact"`` also stores the original pixels of every changed region, losslessly
   (sealed in chunks, so memory stays flat): exact up to the output codec. With ``embed=True`` the
   same sealed payload travels *inside* the MP4/MOV (a top-level ``uuid`` box, which players skip),
   so the video and the key alone recover it; a re-encode of the masked video drops it (then only
   the rotation path below remains).
2. *Rotation* (no payload, or the payload does not open). Each track's masked key frame is encoded
   again, the rotation is inverted with z_r and θ (closed form, :func:`facedeid.privacy.rotation.recover`),
   rendered with the same propagation and refined away from the masked face (``RECOVER_REFINE``:
   24 steps, target 0.85). With a WRONG key this is the book's "natural video of yet another
   identity" (Eq. 8.2–8.3). Refining away from the masked face alone is not enough for that: the
   mask's own refinement pushed the texture code outwards (the masked face's code z_m is 10–14 long,
   ‖z_id‖ of real faces 5–9, and z_m − z_id is within 22–45° of z_m), so the easiest way away from
   the masked face in the recognizer's eyes is back towards the original (a wrong key then landed
   at dlib distance 0.52–0.75 from it on average, single frames down to 0.47). The refinement
   therefore also repels the *origin estimates* (:func:`origin_estimates`): the masked key frame
   rendered with its own code shrunk to 0 and ½ (``ORIGIN_SCALES``), i.e. the mask's outward step
   undone; every view must be the target away from those too. Measured limitation of this model:
   with the RIGHT key this path is not a recovery. The mask's refinement moves the texture code
   about 15 units along directions the recognizer is sensitive to, so encode(masked) is far from
   z_new, and the plausibility check of the render shrinks the code. Right-key recovery therefore
   relies on the payload, which the mask run writes by default (``embed=True``: inside the video).
   Anchoring the key frame to the recognizer, as ``identity-password`` does for photos, was measured
   and not merged: rotating 12 principal coordinates of the descriptor by θ > 90° (needed to
   de-identify) puts a wrong key's rotation back on the same cone around the masked descriptor as the
   original, so any key moves the face back towards it (wrong keys 0.46–0.6 vs 0.72 masked); in 32
   coordinates at θ = 80° a wrong key stays far (0.74 median on exact rotations), but the render
   misses such targets by 0.36–0.64 depending on face and key, so the right key alone recovers only
   some faces.

*Known weakness* (measured, ``benchmarks/identity_mask_video.py``, row "attack, no key"): the identity
change lives in the model's identity code, mostly as the refinement's step far outside its normal
range, so an attacker without the key who sets the masked face's code back to the model's mean undoes
much of it (dlib 0.54–0.62 from the original instead of 0.69; MobileFaceNet matches again).

A wrong key is not reported as such unless ``reveal`` is set (the same "security via ambiguity" as
:mod:`facedeid.recovery`); ``strict=True`` raises :class:`~facedeid.errors.BadKey` instead.

Faces that appear later start their own track: their key frame is their first frame, with the same
key and θ. Frames are streamed (:func:`facedeid.media.video.transcode`); memory does not grow with
the video's length beyond the per-frame report and the payload's landmarks (0.5 kB per face-frame).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import struct
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .errors import BadArguments, BadKey, OutputError, UnsupportedMedia
from .faces.align import align_matrix, transform_points
from .faces.detect import DEFAULT_DETECTOR, detect
from .faces.track import match_boxes
from .faces.types import Box, Face
from .media import payload as payload_mod
from .media.images import write_atomic
from .media.video import TranscodeReport, probe, transcode
from .privacy.keys import reference_direction, secret_bytes

DEFAULT_THETA = 60.0
KEY_PURPOSE = "identity-mask"
ALIGN_SIZE = 256
PAYLOAD_MODES = ("auto", "edit", "exact", "none")
SIDECAR_MAGIC = b"FDVM"
SIDECAR_VERSION = 1
REC_ROI, REC_EDIT = 1, 2
_REC = struct.Struct(">BQ")  # record kind, length of the sealed blob
_FRAME = struct.Struct(">II")  # frame index, length of its packed patches
ROI_CHUNK_BYTES = 8 << 20
#: Refinement of the rotation path of recovery: away from the masked face, further than the mask went.
RECOVER_REFINE = {"steps": 24, "target": 0.85}
#: Code scales of the origin estimates the rotation path of recovery also moves away from.
ORIGIN_SCALES = (0.0, 0.5)
MAX_ATTEMPTS = 3  # key-frame planning tries per track before its later frames are reported as failed
_MODEL_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError, cv2.error, IndexError)


# ============================================================================ keys and angles
def theta_radians(theta_deg: float) -> float:
    theta = float(theta_deg)
    if not (math.isfinite(theta) and 0.0 < theta < 180.0):
        raise BadArguments(f"θ must lie strictly between 0 and 180 degrees, got {theta_deg!r}")
    return math.radians(theta)


@functools.lru_cache(maxsize=8)
def _reference(raw_key: bytes, dim: int) -> np.ndarray:
    return reference_direction(raw_key, dim, purpose=KEY_PURPOSE)


def reference_for(key: Any, dim: int) -> np.ndarray:
    """z_r = f(Ukey) (Eq. 8.4) for the model's code dimension; refuses an empty key."""
    if isinstance(key, str) and not key:
        raise BadArguments("identity-mask needs a key (Ukey): a number or a string")
    return _reference(secret_bytes(key), int(dim)).copy()


# ============================================================================ alignment and edits
def aligned_face(image: np.ndarray, face: Face, size: int = ALIGN_SIZE) -> tuple[np.ndarray, Face, np.ndarray]:
    """The face aligned to the standard 5-point pattern (Umeyama, Eq. 8.13–8.14) in a ``size`` crop:
    (crop, the face in crop coordinates with its 5 and 68 points, 3×3 image→crop matrix)."""
    m = align_matrix(face, size)
    scale = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    src = image
    if scale < 0.8:  # anti-alias before shrinking a large face
        src = cv2.GaussianBlur(image, (0, 0), sigmaX=0.45 / scale)
    crop = cv2.warpAffine(src, m[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    b = face.box
    corners = transform_points(m, np.array([[b.x0, b.y0], [b.x1, b.y0], [b.x0, b.y1], [b.x1, b.y1]]))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    l68 = None if face.landmarks68 is None else transform_points(m, face.landmarks68)
    cface = Face(Box(*lo, *hi).clipped(size, size), face.score, transform_points(m, face.landmarks5), l68, face.detector)
    return crop, cface, m


def plan_identity_edit(model, image: np.ndarray, face: Face, z_r: np.ndarray, theta: float, refine=None,
                       inverse: bool = False, suppress: float = 0.0):
    """The key-frame edit: align, encode, rotate z_id by θ towards z_r (or invert that rotation when
    ``inverse``), plan the render in the aligned crop (``suppress``: the fraction of the face's
    idiosyncratic detail removed, :meth:`facedeid.model.core.FaceModel.texture_delta`; the edit
    carries it, so the payload's inverse restores it). Returns (FaceEdit, info)."""
    from .model.core import IdentityCode
    from .model.refine import RefineSettings
    from .privacy.rotation import recover, rotate

    t0 = time.perf_counter()
    crop, cface, _ = aligned_face(image, face)
    fit = model.encode(crop, cface)
    z = fit.code.vector()
    new = recover(z, z_r, theta) if inverse else rotate(z, z_r, theta)
    if inverse and isinstance(refine, RefineSettings) and refine.steps > 0:
        refine = dataclasses.replace(refine, repel=origin_estimates(model, crop, cface, fit))
    edit = model.plan_edit(crop, fit, IdentityCode.from_vector(new, model.n_shape), refine, suppress)
    rep = edit.report
    info = {"strength": rep.get("strength"), "code_inside_model": rep.get("code_inside_model"),
            "angle_deg": round(math.degrees(math.acos(np.clip(z @ new / (np.linalg.norm(z) * np.linalg.norm(new)), -1, 1))), 2)}
    if "refine" in rep:
        info["refine"] = {k: rep["refine"][k] for k in ("steps", "min_view_distance", "code_step")}
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return edit, info


def origin_estimates(model, crop: np.ndarray, cface: Face, fit, scales: tuple[float, ...] = ORIGIN_SCALES
                     ) -> tuple[tuple[float, ...], ...]:
    """dlib descriptors of the aligned masked face ``crop`` rendered with its own identity code scaled
    by each of ``scales``: the mask's outward code step undone (0 = the model's mean identity, ½ =
    half-way). They point to where the masked face came from (measured on 4 clips' first frames: the
    descriptor change of the 0-render is within 53–82° of the direction to the original, against 90°
    by chance), so the rotation path of recovery keeps every output view away from them as well as
    from the masked face."""
    from .model.anchor import descriptor
    from .model.core import IdentityCode

    codes = [IdentityCode.from_vector(fit.code.vector() * scale, model.n_shape) for scale in scales]
    return tuple(tuple(float(x) for x in descriptor(model.render(crop, fit, code).image, cface.landmarks5)) for code in codes)


def _f32(points: np.ndarray) -> np.ndarray:
    """Landmarks rounded to float32 precision (what the payload stores), as float64."""
    return np.asarray(points, dtype=np.float32).astype(np.float64)


def motion_fit(l68: np.ndarray, image_shape: tuple[int, ...], face: Face | None = None):
    """A frame's own geometry for propagation: its 68 landmarks and head pose, nothing re-encoded
    (what :meth:`FaceModel.apply_edit` needs to carry an edit to the frame, Ch. 8.4.3)."""
    from .model.core import FaceFit, IdentityCode
    from .model.shape import fit_pose

    l68 = np.asarray(l68, dtype=np.float64)
    if face is None:
        lo, hi = l68.min(axis=0), l68.max(axis=0)
        face = Face(Box(*lo, *hi), 1.0, l68[[36, 39, 45, 42, 33]], l68)
    empty = np.zeros(0)
    return FaceFit(face, l68, fit_pose(l68, image_shape), empty, empty, IdentityCode(empty, empty), tuple(image_shape))


def unapply_edit(model, image: np.ndarray, fit, edit) -> np.ndarray:
    """The exact inverse of :meth:`FaceModel.apply_edit` for the same ``fit`` (original landmarks and
    pose) and ``edit``: subtract the texture change on the new landmarks, then map every pixel of the
    original mesh back from where the warp had moved it (same meshes, same fold-over fraction)."""
    from .model.mesh import piecewise_affine_map

    img = np.asarray(image)
    target, _ = model.target_landmarks(fit, edit.d_frontal)
    roi = model.warp_roi(fit)
    x0, y0, x1, y1 = roi
    ring = model._ring_image(fit)
    cmap = model.canvas_map(target, roi)
    alpha = cv2.remap(model._alpha, cmap.map_x, cmap.map_y, cv2.INTER_LINEAR, borderValue=0) * cmap.inside
    delta = cv2.remap(edit.texture, cmap.map_x, cmap.map_y, cv2.INTER_LINEAR, borderValue=0)
    base = img[y0:y1, x0:x1].astype(np.float32) - alpha[..., None] * delta
    geo = piecewise_affine_map(np.concatenate([fit.l68, ring]), np.concatenate([target, ring]), model.geo_triangles, roi)
    back = cv2.remap(base, geo.map_x - x0, geo.map_y - y0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    base[geo.inside] = back[geo.inside]
    out = img.copy()
    out[y0:y1, x0:x1] = np.rint(np.clip(base, 0, 255)).astype(img.dtype)
    return out


# ============================================================================ tracking
@dataclass
class FaceTrack:
    id: int
    box: Box
    l68: np.ndarray
    l5: np.ndarray
    score: float
    start: int
    lost: int = 0
    edit: Any = None
    attempts: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def face(self) -> Face:
        return Face(self.box, self.score, self.l5.copy(), self.l68.copy(), track_id=self.id)


class FaceStream:
    """Faces with 68 landmarks, frame by frame, matched to tracks by box overlap (Hungarian on
    1 − IoU). A track whose face the detector misses is carried by Lucas–Kanade flow of its 68
    points for up to ``hold`` frames (a missed face would be a leak); between detections
    (``detect_every`` > 1) every track moves by flow."""

    def __init__(self, detector: str = DEFAULT_DETECTOR, detect_every: int = 1, hold: int = 8, iou: float = 0.25,
                 min_size: float = 16.0) -> None:
        self.detector, self.detect_every, self.hold, self.iou, self.min_size = detector, max(1, int(detect_every)), hold, iou, min_size
        self.tracks: list[FaceTrack] = []
        self._next = 0
        self._prev: np.ndarray | None = None
        self.seconds = 0.0

    def _flow(self, t: FaceTrack, gray: np.ndarray) -> bool:
        pts = t.l68.astype(np.float32).reshape(-1, 1, 2)
        new, ok, _ = cv2.calcOpticalFlowPyrLK(self._prev, gray, pts, None, winSize=(21, 21), maxLevel=3)
        ok = ok.ravel().astype(bool)
        if ok.sum() < len(ok) // 2:
            return False
        d = new.reshape(-1, 2).astype(np.float64) - t.l68
        d[~ok] = np.median(d[ok], axis=0)
        shift = np.median(d, axis=0)
        t.l68 = t.l68 + d
        t.l5 = t.l5 + shift
        t.box = Box(t.box.x0 + shift[0], t.box.y0 + shift[1], t.box.x1 + shift[0], t.box.y1 + shift[1])
        return True

    def update(self, index: int, rgb: np.ndarray) -> list[tuple[FaceTrack, str]]:
        """The tracks visible in this frame with their status: ``new``, ``detected``, ``held`` (no
        detection, carried by flow) or ``flow`` (a frame between detections)."""
        t0 = time.perf_counter()
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        moved = {t.id: (self._prev is not None and self._flow(t, gray)) for t in self.tracks}
        h, w = rgb.shape[:2]
        status: dict[int, str] = {}
        if index % self.detect_every == 0:
            faces = [f for f in detect(rgb, self.detector, with_68=True) if min(f.box.width, f.box.height) >= self.min_size]
            matched = match_boxes([t.box for t in self.tracks], [f.box for f in faces], self.iou)
            used = {j for _, j in matched}
            for i, j in matched:
                t, f = self.tracks[i], faces[j]
                t.box, t.l68, t.l5, t.score, t.lost = f.box, np.asarray(f.landmarks68, float), np.asarray(f.landmarks5, float), f.score, 0
                status[t.id] = "detected"
            for t in self.tracks:
                if t.id not in status:
                    t.lost += 1
                    if moved[t.id] and t.lost <= self.hold:
                        status[t.id] = "held"
            self.tracks = [t for t in self.tracks if t.id in status]
            for j, f in enumerate(faces):
                if j not in used:
                    t = FaceTrack(self._next, f.box, np.asarray(f.landmarks68, float), np.asarray(f.landmarks5, float), f.score, index)
                    self._next += 1
                    self.tracks.append(t)
                    status[t.id] = "new"
        else:
            self.tracks = [t for t in self.tracks if moved[t.id]]
            status = {t.id: "flow" for t in self.tracks}
        for t in self.tracks:
            t.box = t.box.clipped(w, h)
        self._prev = gray
        self.seconds += time.perf_counter() - t0
        return [(t, status[t.id]) for t in self.tracks]


# ============================================================================ streaming with a frame limit
def stream_video(src: Path, dst: Path, fn: Callable[[int, float, np.ndarray], np.ndarray], quality: int = 18,
                 max_frames: int | None = None) -> TranscodeReport:
    """:func:`facedeid.media.video.transcode`, or — with ``max_frames`` — the same path stopped after
    that many frames, the audio cut at the same time."""
    if max_frames is None:
        return transcode(src, dst, fn, quality=quality)
    if max_frames < 1:
        raise BadArguments("max_frames must be at least 1")
    import av

    from .media import video as V

    rep = TranscodeReport()
    inp, tmp = V.open_input_and_temp_output(src, dst)
    try:
        v = inp.streams.video[0]
        with av.open(tmp, "w") as out:
            ov = V._video_stream(out, v, quality)
            copied, reencode = V._audio_streams(out, inp.streams.audio)
            rep.audio_streams_copied, rep.audio_streams_reencoded = len(copied), len(reencode)
            last_pts, end_t = None, None
            for packet in inp.demux(v, *inp.streams.audio):
                if packet.stream.type == "video":
                    if end_t is not None:
                        continue
                    for frame in packet.decode():
                        if rep.frames >= max_frames:
                            end_t = float(frame.pts * frame.time_base) if frame.pts is not None else None
                            end_t = end_t if end_t is not None else 0.0
                            break
                        last_pts = V._encode_frame(out, ov, frame, fn, rep, last_pts)
                elif packet.dts is not None:
                    t = float(packet.pts * packet.time_base) if packet.pts is not None else None
                    if end_t is not None and t is not None and t >= end_t:
                        continue
                    V._audio_packet(out, packet, copied, reencode)
            for p in ov.encode(None):
                out.mux(p)
            for s in reencode.values():
                for p in s.encode(None):
                    out.mux(p)
    except Exception:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        inp.close()
    os.replace(tmp, dst)
    rep.extra["max_frames"] = max_frames
    return rep


# ============================================================================ the sealed sidecar
class _PayloadWriter:
    """``<out>.facedeid-payload``: MAGIC | version, then records (kind u8 | length u64 | sealed blob):
    ROI chunks (original pixels, ``exact`` mode) as they fill, and the edit record last."""

    def __init__(self, path: Path, key: Any, exact: bool) -> None:
        self.path, self.key, self.exact = path, key, exact
        fd, tmp = tempfile.mkstemp(prefix=".facedeid-payload-", dir=path.parent)
        self.tmp = Path(tmp)
        self.f = os.fdopen(fd, "wb")
        self.f.write(SIDECAR_MAGIC + bytes([SIDECAR_VERSION]))
        self.buf = io.BytesIO()
        self.frames: list[int] = []
        self.tracks: list[int] = []
        self.landmarks: list[np.ndarray] = []

    def _record(self, kind: int, plain: bytes) -> None:
        blob = payload_mod.seal(plain, self.key)
        self.f.write(_REC.pack(kind, len(blob)) + blob)

    def add_face(self, frame: int, track: int, l68: np.ndarray) -> None:
        self.frames.append(frame)
        self.tracks.append(track)
        self.landmarks.append(np.asarray(l68, dtype=np.float32))

    def add_rois(self, frame: int, patches: list) -> None:
        if not patches:
            return
        data = payload_mod.pack_patches(patches)
        self.buf.write(_FRAME.pack(frame, len(data)) + data)
        if self.buf.tell() >= ROI_CHUNK_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.buf.tell():
            self._record(REC_ROI, self.buf.getvalue())
            self.buf = io.BytesIO()

    def finish(self, edits: dict[int, Any], meta: dict[str, Any]) -> int:
        self._flush()
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "frame": np.asarray(self.frames, dtype=np.int64),
            "track": np.asarray(self.tracks, dtype=np.int64),
            "l68": np.stack(self.landmarks) if self.landmarks else np.zeros((0, 68, 2), np.float32),
        }
        for tid, edit in edits.items():
            arrays[f"d_{tid}"] = np.asarray(edit.d_frontal, dtype=np.float64)
            arrays[f"tex_{tid}"] = np.asarray(edit.texture, dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._record(REC_EDIT, zlib.compress(buf.getvalue(), 6))
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.path.stat().st_size

    def abort(self) -> None:
        if not self.f.closed:
            self.f.close()
        self.tmp.unlink(missing_ok=True)


def _records(path: Path):
    """(kind, offset, length) of every record of a sidecar; UnsupportedMedia when it is not one."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(SIDECAR_MAGIC) + 1)
        if head[:4] != SIDECAR_MAGIC or len(head) < 5 or head[4] != SIDECAR_VERSION:
            raise UnsupportedMedia(f"{path}: not an identity-mask payload")
        pos, out = len(head), []
        while pos < size:
            raw = f.read(_REC.size)
            if len(raw) < _REC.size:
                raise UnsupportedMedia(f"{path}: truncated payload")
            kind, length = _REC.unpack(raw)
            pos += _REC.size
            if pos + length > size:
                raise UnsupportedMedia(f"{path}: truncated payload")
            out.append((kind, pos, length))
            f.seek(length, 1)
            pos += length
    return out


class _PayloadReader:
    """Opens a sidecar with the key (BadKey when the key is wrong or a byte was altered)."""

    def __init__(self, path: Path, key: Any) -> None:
        from .model.core import FaceEdit, IdentityCode

        self.path, self.key = path, key
        recs = _records(path)
        edit_recs = [r for r in recs if r[0] == REC_EDIT]
        if len(edit_recs) != 1:
            raise UnsupportedMedia(f"{path}: payload without its edit record")
        self.roi_recs = [r for r in recs if r[0] == REC_ROI]
        plain = zlib.decompress(payload_mod.unseal(self._read(edit_recs[0]), key))
        with np.load(io.BytesIO(plain), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        self.meta = json.loads(arrays["meta"].tobytes().decode())
        empty = IdentityCode(np.zeros(0), np.zeros(0))
        self.edits = {int(k[2:]): FaceEdit(arrays[k], arrays[f"tex_{k[2:]}"], empty) for k in arrays if k.startswith("d_")}
        self.by_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
        for fr, tr, l68 in zip(arrays["frame"], arrays["track"], arrays["l68"]):
            self.by_frame.setdefault(int(fr), []).append((int(tr), l68.astype(np.float64)))
        self._rois = self._iter_rois()
        self._pending: tuple[int, list] | None = None

    def _read(self, rec) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(rec[1])
            return f.read(rec[2])

    @property
    def exact(self) -> bool:
        return bool(self.roi_recs)

    def _iter_rois(self):
        for rec in self.roi_recs:
            data = payload_mod.unseal(self._read(rec), self.key)
            pos = 0
            while pos < len(data):
                frame, length = _FRAME.unpack_from(data, pos)
                pos += _FRAME.size
                yield frame, payload_mod.unpack_patches(data[pos:pos + length])
                pos += length

    def rois(self, frame: int) -> list:
        """The original patches of ``frame`` (frames are asked in increasing order)."""
        while True:
            if self._pending is None:
                self._pending = next(self._rois, None)
                if self._pending is None:
                    return []
            f, patches = self._pending
            if f > frame:
                return []
            self._pending = None
            if f == frame:
                return patches


# ============================================================================ the shared frame loop
@dataclass
class _Run:
    model: Any
    z_r: np.ndarray
    theta: float
    inverse: bool
    propagate: bool
    refine: Any
    stream: FaceStream
    writer: _PayloadWriter | None = None
    suppress: float = 0.0
    per_frame: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    tracks: dict[int, FaceTrack] = field(default_factory=dict)
    plan_s: float = 0.0
    apply_s: float = 0.0
    frames_with_faces: int = 0
    uncertain: list[int] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def frame(self, i: int, t: float, rgb: np.ndarray) -> np.ndarray:
        out = rgb
        rows, patches = [], []
        for track, status in self.stream.update(i, rgb):
            self.tracks.setdefault(track.id, track)
            row = {"track": track.id, "status": status, "box": track.box.to_list()}
            edit = track.edit
            try:
                if edit is None and self.propagate and track.attempts >= MAX_ATTEMPTS:
                    raise ValueError("no edit could be planned for this track")
                if edit is None or not self.propagate:
                    t0 = time.perf_counter()
                    track.attempts += 1
                    edit, info = plan_identity_edit(self.model, rgb, track.face(), self.z_r, self.theta, self.refine, self.inverse,
                                                    self.suppress)
                    self.plan_s += time.perf_counter() - t0
                    if self.propagate:
                        track.edit, track.info = edit, {"key_frame": i, **info}
                    else:
                        track.info.setdefault("per_frame", []).append(info.get("refine", {}).get("min_view_distance"))
                    row["planned"] = True
                t0 = time.perf_counter()
                l68 = _f32(track.l68)
                fit = motion_fit(l68, rgb.shape)
                if self.writer is not None and self.writer.exact:
                    x0, y0, x1, y1 = self.model.warp_roi(fit)
                    patches.append((y0, x0, np.ascontiguousarray(rgb[y0:y1, x0:x1])))
                rendered = self.model.apply_edit(out, fit, edit)
                out = rendered.image
                row["shape_fraction"] = rendered.report.get("shape_fraction")
                if self.writer is not None:
                    self.writer.add_face(i, track.id, l68)
                self.apply_s += time.perf_counter() - t0
            except _MODEL_ERRORS as exc:
                row["failed"] = str(exc)[:120]
                self.failures.append({"frame": i, "track": track.id, "error": row["failed"]})
            rows.append(row)
        if self.writer is not None:
            self.writer.add_rois(i, patches)
        self.frames_with_faces += bool(rows)
        if any(r["status"] == "held" for r in rows):
            self.uncertain.append(i)
        self.per_frame.append({"frame": i, "time": round(t, 4), "faces": rows, "elapsed": round(time.perf_counter() - self.t0, 3)})
        return out

    def track_rows(self) -> list[dict[str, Any]]:
        out = []
        for tid, t in sorted(self.tracks.items()):
            frames = [r["status"] for fr in self.per_frame for r in fr["faces"] if r["track"] == tid]
            row = {"id": tid, "first_frame": t.start, "frames": len(frames), "held_frames": frames.count("held"),
                   "masked": t.edit is not None or not self.propagate}
            row.update({k: v for k, v in t.info.items() if k != "per_frame"})
            if "per_frame" in t.info:
                vals = [v for v in t.info["per_frame"] if v is not None]
                row["refine_min_view_distance_mean"] = round(float(np.mean(vals)), 4) if vals else None
            out.append(row)
        return out


def _common_report(src: Path, dst: Path, run: _Run, tr: TranscodeReport, seconds: float, theta_deg: float) -> dict[str, Any]:
    frames = tr.frames
    return {
        "source": str(src), "output": str(dst), "theta_deg": theta_deg, "propagate": run.propagate,
        "refine": run.refine is not None, "frames": frames, "frames_with_faces": run.frames_with_faces,
        "tracks": run.track_rows(), "uncertain_frames": run.uncertain, "failures": run.failures,
        "seconds": round(seconds, 3), "fps": round(frames / seconds, 3) if seconds > 0 else None,
        "seconds_detect": round(run.stream.seconds, 3), "seconds_plan": round(run.plan_s, 3),
        "seconds_apply": round(run.apply_s, 3), "transcode": asdict(tr), "output_info": asdict(probe(dst)),
        "per_frame": run.per_frame,
    }


def _settings(refine: bool, refine_settings, recover: bool = False):
    if refine_settings is not None:
        return refine_settings if getattr(refine_settings, "steps", 0) > 0 else None
    if not refine:
        return None
    from .model.refine import RefineSettings

    return RefineSettings(**RECOVER_REFINE) if recover else RefineSettings()


def _paths(src: str | Path, dst: str | Path) -> tuple[Path, Path]:
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise UnsupportedMedia(f"{src}: no such video")
    if src.resolve() == dst.resolve():
        raise OutputError(f"{dst}: refusing to overwrite the input")
    return src, dst


# ============================================================================ public API
def mask_video(src: str | Path, dst: str | Path, key: Any, theta_deg: float = DEFAULT_THETA, propagate: bool = True,
               refine: bool = True, *, detector: str = DEFAULT_DETECTOR, detect_every: int = 1,
               max_frames: int | None = None, payload: str = "auto", quality: int = 18,
               report_path: str | Path | None = None, refine_settings=None, embed: bool = False,
               suppress: float = 0.0) -> dict[str, Any]:
    """IdentityMask (Alg. 2): de-identify every face of ``src`` into ``dst`` under the key ``key``.

    ``propagate=False`` is the "w/o MF" ablation (every frame encoded, rotated and refined anew).
    ``payload``: ``edit`` (default with propagation) writes the sealed edit sidecar
    ``<dst>.facedeid-payload`` for near-exact recovery, ``exact`` also the original pixels of every
    changed region, ``none`` nothing (recovery then goes through the rotation only); ``auto`` is
    ``edit`` with propagation and ``none`` without. ``embed`` puts that payload inside the output
    instead of the sidecar (a ``uuid`` box appended to the MP4/MOV,
    :func:`facedeid.media.payload.embed_mp4_file`), so the video and the key alone recover it.
    ``suppress`` ∈ [0, 1] also removes that fraction of each face's idiosyncratic detail (marks the
    model cannot explain; the edit, hence the payload, restores it). Returns the JSON-ready report
    (also written to ``report_path``). The report never holds the key, the original code or landmarks.
    """
    from .model.core import load_model

    src, dst = _paths(src, dst)
    theta = theta_radians(theta_deg)
    if payload not in PAYLOAD_MODES:
        raise BadArguments(f"payload must be one of {', '.join(PAYLOAD_MODES)}")
    if not 0.0 <= suppress <= 1.0:
        raise BadArguments("suppress must be in [0, 1]")
    mode = ("edit" if propagate else "none") if payload == "auto" else payload
    if mode == "edit" and not propagate:
        raise BadArguments("payload=edit needs propagation (one edit per track); use payload=exact or none")
    if embed and (mode == "none" or dst.suffix.lower() not in payload_mod.MP4_SUFFIXES):
        raise BadArguments("embed needs a payload (edit or exact) and an MP4/MOV output (.mp4, .m4v, .mov)")
    model = load_model()
    z_r = reference_for(key, model.dim)
    info = probe(src)
    side = payload_mod.sidecar_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    writer = _PayloadWriter(side, key, exact=mode == "exact") if mode != "none" else None
    run = _Run(model, z_r, theta, False, propagate, _settings(refine, refine_settings), FaceStream(detector, detect_every), writer,
               suppress=suppress)
    t0 = time.perf_counter()
    try:
        tr = stream_video(src, dst, run.frame, quality=quality, max_frames=max_frames)
        seconds = time.perf_counter() - t0
        payload_info: dict[str, Any] = {"mode": mode}
        if writer is not None:
            edits = {tid: t.edit for tid, t in run.tracks.items() if t.edit is not None}
            meta = {"version": SIDECAR_VERSION, "theta_deg": theta_deg, "frames": tr.frames, "propagate": propagate}
            payload_info.update(path=str(side), bytes=writer.finish(edits, meta))
            if embed:
                payload_mod.embed_mp4_file(dst, side)
                side.unlink()
                payload_info.update(path=str(dst), embedded=True)
        elif side.exists():
            side.unlink()  # a stale payload of an earlier run would not match this output
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    rep = {"method": "identity-mask", "mode": "mask", **_common_report(src, dst, run, tr, seconds, theta_deg),
           "input": asdict(info), "payload": payload_info}
    if report_path is not None:
        write_atomic(report_path, json.dumps(rep, indent=1, default=str).encode())
    return rep


@contextlib.contextmanager
def _payload_file(src: Path, payload_path: str | Path | None, use_payload: bool):
    """(payload file, whether it came from inside the video): ``payload_path``, else the sidecar, else
    — when the video carries one (``mask_video(embed=True)``) — a temporary copy of the still-sealed
    payload inside it, removed afterwards (the reader reads it lazily while the video streams)."""
    side = Path(payload_path) if payload_path is not None else payload_mod.sidecar_path(src)
    if not use_payload or payload_path is not None or side.is_file():
        yield side, False
        return
    fd, name = tempfile.mkstemp(prefix="facedeid-payload-", suffix=".sealed")
    os.close(fd)
    inside = Path(name)
    try:
        found = payload_mod.extract_mp4_file(src, inside)
        yield (inside if found else side), found
    finally:
        inside.unlink(missing_ok=True)


def recover_video(src: str | Path, dst: str | Path, key: Any, theta_deg: float = DEFAULT_THETA, refine: bool = True, *,
                  detector: str = DEFAULT_DETECTOR, detect_every: int = 1, max_frames: int | None = None,
                  payload_path: str | Path | None = None, use_payload: bool = True, strict: bool = False,
                  reveal: bool = True, quality: int = 18, report_path: str | Path | None = None,
                  refine_settings=None) -> dict[str, Any]:
    """IdentityMask recovery (Alg. 3) of a masked video ``src`` into ``dst`` with the key ``key``.

    With the sidecar ``<src>.facedeid-payload`` (or ``payload_path``), or else the payload inside the
    video (``mask_video(..., embed=True)``), and the right key: the exact
    inverse of every edit (``how = "edit"``) or the original pixels (``how = "exact"``). Otherwise —
    no payload, ``use_payload=False``, or a key that does not open it — the rotation path
    (``how = "rotation"``): re-encode each track's key frame, invert the rotation with the key's z_r
    and θ, render with refinement away from the masked face and propagate. A wrong key thus gives
    a natural video of yet another identity; ``strict=True`` raises BadKey instead when a payload
    exists but does not open. ``reveal=False`` hides which path was taken.
    """
    from .model.core import load_model

    src, dst = _paths(src, dst)
    theta = theta_radians(theta_deg)
    model = load_model()
    z_r = reference_for(key, model.dim)
    with _payload_file(src, payload_path, use_payload) as (side, embedded):
        reader, how, note = None, "rotation", "no payload"
        if use_payload and side.is_file():
            try:
                reader = _PayloadReader(side, key)
                how, note = ("exact" if reader.exact else "edit"), "payload opened" + (" (inside the video)" if embedded else "")
            except BadKey:
                if strict:
                    raise
                note = "payload did not open"
        elif not use_payload:
            note = "payload not used"
        t0 = time.perf_counter()
        run: _Run | None = None
        if reader is None:
            run = _Run(model, z_r, theta, True, True, _settings(refine, refine_settings, recover=True), FaceStream(detector, detect_every))
            fn = run.frame
        else:
            per_frame: list[dict[str, Any]] = []

            def fn(i: int, t: float, rgb: np.ndarray) -> np.ndarray:
                out = rgb
                faces = reader.by_frame.get(i, [])
                if reader.exact:
                    out = payload_mod.apply_patches(rgb, reader.rois(i))
                else:
                    for tid, l68 in reversed(faces):  # undo in the reverse order of masking
                        out = unapply_edit(model, out, motion_fit(l68, rgb.shape), reader.edits[tid])
                per_frame.append({"frame": i, "time": round(t, 4), "faces": [{"track": tid} for tid, _ in faces]})
                return out

        tr = stream_video(src, dst, fn, quality=quality, max_frames=max_frames)
    seconds = time.perf_counter() - t0
    if run is not None:
        rep = _common_report(src, dst, run, tr, seconds, theta_deg)
    else:
        rep = {"source": str(src), "output": str(dst), "theta_deg": theta_deg, "frames": tr.frames,
               "frames_with_faces": sum(bool(r["faces"]) for r in per_frame), "tracks": sorted(reader.edits),
               "seconds": round(seconds, 3), "fps": round(tr.frames / seconds, 3) if seconds > 0 else None,
               "transcode": asdict(tr), "output_info": asdict(probe(dst)), "per_frame": per_frame}
    rep = {"method": "identity-mask", "mode": "recover", **rep}
    rep["how"] = how if reveal else "hidden"
    if reveal:
        rep["payload"] = {"path": str(src) if embedded else str(side), "note": note}
    if report_path is not None:
        write_atomic(report_path, json.dumps(rep, indent=1, default=str).encode())
    return rep


__all__ = ["DEFAULT_THETA", "KEY_PURPOSE", "FaceStream", "aligned_face", "mask_video", "motion_fit", "origin_estimates",
           "plan_identity_edit", "recover_video", "reference_for", "stream_video", "theta_radians", "unapply_edit"]
