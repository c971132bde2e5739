"""Offline face features for attribute prediction (book Ch. 4.4.1) and the neighbour search φ.

Two feature vectors are computed per face:

* **φ (phi), the neighbour-search feature of Algorithm 1**: dlib's 128-D face descriptor
  (:class:`~facedeid.identity.recognizers.DlibRecognizer`, ResNet on the 150×150 face chip from the
  5 landmarks), compared by Euclidean distance. It is what the k nearest neighbours of Ch. 4.3 are
  found with.
* **the classifier input**: φ concatenated with hand-made texture and geometry statistics
  (:func:`texture_features`). No face parser ships offline (see shared MODELS.md), so the regions are
  built from dlib's 68 landmarks in a canonical frame: the face is warped by a similarity transform
  (eye centres and mouth centre) into a 112×128 canvas with room for the hair, and every region's
  CIE-Lab colour, lightness histogram and edge energy are measured there (pixels that fall outside the
  source image are masked out, never reflected in).

Regions (canvas coordinates; IOD = 32 px, eyes at y = 60, mouth centre at y = 96):
``hair_top`` (scalp or hair above the forehead), ``forehead`` (band above the brows: bangs),
``hair_sides`` (left and right of the temples: long hair colour), ``cheeks`` (skin reference),
``mouth`` (inner-lip polygon: open mouth shows teeth/dark), ``upper_lip`` (nose to lip: mustache),
``chin`` and ``jaw`` (beard), ``brows`` (a band along each brow: bushy eyebrows), ``eye_ring``
(around the eyes minus the eyes: glasses rims) and ``bridge`` (between the eyes: glasses bridge).
Geometry: inner-mouth opening, mouth width, brow-to-eye distance, face width, all in IOD units.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ..faces.align import umeyama
from ..faces.detect import detect
from ..faces.types import Face
from ..identity.recognizers import DlibRecognizer

FEATURE_VERSION = 1
PHI_NAME = "dlib-128 (Euclidean)"
PHI_DIM = 128

CANVAS_W, CANVAS_H = 112, 128
IOD = 32.0
# canonical eye centres and mouth centre in the canvas
CANON = np.array([[40.0, 60.0], [72.0, 60.0], [56.0, 96.0]])

REGIONS = (
    "hair_top", "forehead", "hair_sides", "cheeks", "mouth", "upper_lip",
    "chin", "jaw", "brows", "eye_ring", "bridge",
)
_L_BINS = np.array([0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 101.0])
_STAT_NAMES = (
    ["L", "a", "b", "sdL", "sda", "sdb"]
    + [f"hL{i}" for i in range(len(_L_BINS) - 1)]
    + ["gx", "gy", "dL", "da", "db", "valid"]
)
GEOMETRY_NAMES = ("mouth_open", "mouth_inner_area", "mouth_width", "brow_eye", "face_width", "gray")
TEXTURE_NAMES = tuple(f"{r}.{s}" for r in REGIONS for s in _STAT_NAMES) + GEOMETRY_NAMES
TEXTURE_DIM = len(TEXTURE_NAMES)
FEATURE_NAMES = tuple(f"phi{i}" for i in range(PHI_DIM)) + TEXTURE_NAMES
FEATURE_DIM = len(FEATURE_NAMES)


@dataclass(frozen=True)
class FaceFeatures:
    """Features of one face: ``phi`` (dlib 128-D, the neighbour-search feature) and ``texture``."""

    phi: np.ndarray
    texture: np.ndarray

    @property
    def vector(self) -> np.ndarray:
        """The classifier input: ``[phi, texture]`` (float32, length :data:`FEATURE_DIM`)."""
        return np.concatenate([self.phi, self.texture]).astype(np.float32)


# --------------------------------------------------------------------------- face choice
def main_face(image: np.ndarray, detector: str = "centerface") -> Face | None:
    """The face a dataset image is labelled for, with 68 landmarks, or ``None``.

    Dataset images (CelebA aligned crops, LFW deep-funneled, ORL, …) show the labelled person in the
    middle: among the detected faces the one whose box holds the image centre (largest if several)
    is taken, else the largest. CenterFace finds the 45-px faces of the half-resolution CelebA crops;
    dlib HOG (upsampled ×2 for small images) is the fallback.
    """
    for det in (detector, "hog"):
        faces = detect(image, det, with_68=True)
        if faces:
            break
    else:
        return None
    h, w = image.shape[:2]
    cx, cy = w / 2.0, h / 2.0
    central = [f for f in faces if f.box.x0 <= cx <= f.box.x1 and f.box.y0 <= cy <= f.box.y1]
    return max(central or faces, key=lambda f: f.box.area)


# --------------------------------------------------------------------------- canonical frame
def canonical_points(l68: np.ndarray) -> np.ndarray:
    """Left eye centre, right eye centre and mouth centre from the 68 points, (3, 2)."""
    return np.stack([l68[36:42].mean(axis=0), l68[42:48].mean(axis=0), l68[48:68].mean(axis=0)])


def canonical_warp(image: np.ndarray, l68: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face in the 112×128 canonical canvas: (Lab float32 image, valid mask, 68 points there)."""
    m = umeyama(canonical_points(l68), CANON)
    rgb = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
    rgb = np.ascontiguousarray(rgb[..., :3]).astype(np.float32) / 255.0
    warped = cv2.warpAffine(rgb, m[:2], (CANVAS_W, CANVAS_H), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    ones = np.ones(rgb.shape[:2], dtype=np.float32)
    valid = cv2.warpAffine(ones, m[:2], (CANVAS_W, CANVAS_H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) > 0.5
    lab = cv2.cvtColor(warped, cv2.COLOR_RGB2Lab)
    pts = l68 @ m[:2, :2].T + m[:2, 2]
    return lab, valid, pts


def _poly_mask(poly: np.ndarray, dilate: int = 0) -> np.ndarray:
    mask = np.zeros((CANVAS_H, CANVAS_W), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    if dilate:
        mask = cv2.dilate(mask, np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8))
    return mask.astype(bool)


def _rect_mask(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    mask = np.zeros((CANVAS_H, CANVAS_W), dtype=bool)
    xa, xb = int(max(0, round(x0))), int(min(CANVAS_W, round(x1)))
    ya, yb = int(max(0, round(y0))), int(min(CANVAS_H, round(y1)))
    if xb > xa and yb > ya:
        mask[ya:yb, xa:xb] = True
    return mask


def region_masks(pts: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of :data:`REGIONS` in the canvas, from the 68 points in canvas coordinates."""
    brow_top = float(pts[17:27, 1].min())
    eyes = _poly_mask(pts[36:42], 2) | _poly_mask(pts[42:48], 2)
    brow_band = np.zeros((CANVAS_H, CANVAS_W), dtype=bool)
    for a, b in ((17, 22), (22, 27)):
        brow = pts[a:b]
        band = np.concatenate([brow + [0, -3.5], (brow + [0, 3.5])[::-1]])
        brow_band |= _poly_mask(band)
    l_cheek = (pts[1] + pts[2] + pts[31] + pts[41]) / 4
    r_cheek = (pts[15] + pts[14] + pts[35] + pts[46]) / 4
    cheeks = _rect_mask(*(l_cheek - 5), *(l_cheek + 5)) | _rect_mask(*(r_cheek - 5), *(r_cheek + 5))
    eye_ring = _rect_mask(pts[36, 0] - 6, pts[37:39, 1].min() - 7, pts[45, 0] + 6, pts[40:42, 1].max() + 8) & ~eyes & ~brow_band
    bridge = _rect_mask(pts[39, 0] + 2, pts[27, 1] - 4, pts[42, 0] - 2, pts[28, 1] + 2)
    return {
        "hair_top": _rect_mask(32, max(2.0, brow_top - 48), 80, max(6.0, brow_top - 26)),
        "forehead": _rect_mask(pts[19, 0], brow_top - 14, pts[24, 0], brow_top - 3),
        "hair_sides": _rect_mask(4, 30, pts[0, 0] - 4, 76) | _rect_mask(pts[16, 0] + 4, 30, CANVAS_W - 4, 76),
        "cheeks": cheeks,
        "mouth": _poly_mask(pts[60:68], 1),
        "upper_lip": _poly_mask(np.concatenate([pts[31:36], pts[[54, 53, 52, 51, 50, 49, 48]]])),
        "chin": _poly_mask(np.concatenate([pts[5:12], pts[[55, 56, 57, 58, 59]]])),
        "jaw": _poly_mask(pts[[2, 3, 4, 5, 48]]) | _poly_mask(pts[[11, 12, 13, 14, 54]]),
        "brows": brow_band,
        "eye_ring": eye_ring,
        "bridge": bridge,
    }


def _stats(lab: np.ndarray, gx: np.ndarray, gy: np.ndarray, mask: np.ndarray, skin: np.ndarray) -> list[float]:
    n = int(mask.sum())
    if n < 3:
        return [0.0] * (len(_STAT_NAMES) - 1) + [0.0]
    px = lab[mask]
    mean, sd = px.mean(axis=0), px.std(axis=0)
    hist = np.histogram(px[:, 0], bins=_L_BINS)[0] / n
    d = mean - skin
    return [*mean, *sd, *hist, float(np.abs(gx[mask]).mean()), float(np.abs(gy[mask]).mean()), *d, min(1.0, n / 200.0)]


def texture_features(image: np.ndarray, l68: np.ndarray) -> np.ndarray:
    """Texture and geometry statistics of the face with 68 points ``l68`` (float32, :data:`TEXTURE_DIM`)."""
    lab, valid, pts = canonical_warp(image, l68)
    masks = {k: m & valid for k, m in region_masks(pts).items()}
    gx = cv2.Sobel(lab[..., 0], cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(lab[..., 0], cv2.CV_32F, 0, 1, ksize=3) / 8.0
    skin_px = lab[masks["cheeks"]] if masks["cheeks"].sum() >= 3 else lab[valid]
    skin = skin_px.mean(axis=0)
    out: list[float] = []
    for name in REGIONS:
        out += _stats(lab, gx, gy, masks[name], skin)
    inner_area = float(cv2.contourArea(pts[60:68].astype(np.float32)))
    rgb = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
    gray = float(np.abs(rgb[..., 0].astype(np.int16) - rgb[..., 2].astype(np.int16)).mean() < 2.0)
    out += [
        float(np.linalg.norm(pts[[61, 62, 63]] - pts[[67, 66, 65]], axis=1).mean()) / IOD,
        inner_area / IOD**2,
        float(np.linalg.norm(pts[54] - pts[48])) / IOD,
        float(pts[[37, 38, 43, 44], 1].mean() - pts[[19, 24], 1].mean()) / IOD,
        float(np.linalg.norm(pts[16] - pts[0])) / IOD,
        gray,
    ]
    return np.asarray(out, dtype=np.float32)


@functools.cache
def _recognizer() -> DlibRecognizer:
    return DlibRecognizer()


def phi(image: np.ndarray, face: Face) -> np.ndarray:
    """φ of Algorithm 1: the dlib 128-D descriptor of ``face`` (float32)."""
    return _recognizer().embed(image, [face])[0]


def face_features(image: np.ndarray, face: Face) -> FaceFeatures:
    """φ and texture features of one face (68 landmarks are computed if missing)."""
    if face.landmarks68 is None:
        from ..faces.landmarks import with_landmarks68

        face = with_landmarks68(image, face)
    return FaceFeatures(phi=phi(image, face), texture=texture_features(image, face.landmarks68))


def image_features(image: np.ndarray) -> FaceFeatures | None:
    """Features of the main face of a dataset-style image (:func:`main_face`), or ``None``."""
    face = main_face(image)
    return None if face is None else face_features(image, face)
