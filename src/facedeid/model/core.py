"""The parametric face model: encode a face into an identity code, render a face with another code.

``FaceModel.encode(image, face)`` fits the model to one face: pose, frontal shape, shape and texture
PCA coefficients and the identity code (:class:`IdentityCode`: whitened identity coordinates of
shape and texture, unit between-identity spread per coordinate). ``FaceModel.render(image, fit,
code)`` moves only the identity part to ``code`` — expression, pose, lighting, hair, accessories
and background stay the photo's ("divide and conquer", Ch. 7.3):

1. target landmarks: the identity displacement of the frontal shape, re-projected with the face's
   own pose; the warp's fixed outer ring keeps everything outside the face where it was;
2. the photo's pixels warped piecewise-affinely from the old to the new landmarks (no fold-overs:
   the displacement is halved until no triangle flips);
3. the texture's detail layer moved by the identity change of the texture code (the low-frequency
   shading and colour stay the photo's), mapped from the canvas onto the new landmarks and blended
   with a feathered inner-face mask that leaves hair, forehead and background untouched
   ("visual similarity assistance", Ch. 7.3.3);
4. optional refinement (:mod:`facedeid.model.refine`): a few gradient steps on the texture
   coefficients and a smooth colour field against the PyTorch port of dlib's recognizer.

Strength is the distance moved in code space in units of the typical distance between two people
(√(2m) for an m-dimensional whitened code): strength 1 moves a face as far as another person is.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.stats import chi2

from ..errors import ModelUnavailable
from ..faces.landmarks import landmarks68
from ..faces.types import Face
from ..metrics.utility import FACE_3D_68
from .mesh import clip_roi, fold_overs, piecewise_affine_map
from .shape import Pose, fit_pose, frontal_shape
from .subspace import Subspace
from .texture import Canvas

MODEL_PATH = Path(__file__).parent / "data" / "face_model.npz"
#: Codes whose squared norm exceeds this quantile of χ²(m) are pulled back towards the mean.
PLAUSIBLE_QUANTILE = 0.999
#: PCA coefficients are clamped to ± this many standard deviations.
PCA_CLAMP = 3.5
#: Detail finer than this (canvas pixels) is never suppressed: skin grain and sensor noise.
FINE_SIGMA = 1.0


@dataclass(frozen=True)
class IdentityCode:
    """Whitened identity coordinates: ``shape`` (m_s,) and ``texture`` (m_t,)."""

    shape: np.ndarray
    texture: np.ndarray

    def vector(self) -> np.ndarray:
        return np.concatenate([self.shape, self.texture]).astype(np.float64)

    @classmethod
    def from_vector(cls, v: np.ndarray, n_shape: int) -> "IdentityCode":
        v = np.asarray(v, dtype=np.float64)
        return cls(shape=v[:n_shape].copy(), texture=v[n_shape:].copy())


@dataclass
class FaceFit:
    """What :meth:`FaceModel.encode` learns about one face."""

    face: Face
    l68: np.ndarray
    pose: Pose
    shape_y: np.ndarray
    texture_y: np.ndarray
    code: IdentityCode
    image_shape: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FaceEdit:
    """A pose-free identity edit: ``d_frontal`` (68, 2) frontal-frame landmark displacement and
    ``texture`` (canvas, canvas, 3) change of the detail layer; ``code`` is the identity it renders."""

    d_frontal: np.ndarray
    texture: np.ndarray
    code: IdentityCode
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rendered:
    image: np.ndarray
    target_l68: np.ndarray
    report: dict[str, Any]


class FaceModel:
    """Shape and texture subspaces, the texture canvas and the warp mesh (see module doc)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.shape = Subspace.from_arrays(arrays, "shape")
        self.texture = Subspace.from_arrays(arrays, "texture")
        pts = np.asarray(arrays["canvas_points"], dtype=np.float64)
        self.canvas = Canvas.create_from(pts, np.asarray(arrays["canvas_triangles"], dtype=np.int32),
                                         sigma=float(arrays["detail_sigma"]) if "detail_sigma" in arrays else 3.0)
        self.ring = np.asarray(arrays["geo_ring"], dtype=np.float64)
        self.geo_triangles = np.asarray(arrays["geo_triangles"], dtype=np.int32)
        self.identity_means = np.asarray(arrays["identity_means"], dtype=np.float64)
        self.provenance = json.loads(str(arrays["provenance"]))
        self._alpha = self.canvas.alpha()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path | None = None) -> "FaceModel":
        p = Path(path) if path else MODEL_PATH
        if not p.exists():
            raise ModelUnavailable(f"face model {p} not found: build it with `facedeid model build`")
        with np.load(p, allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files})

    @property
    def n_shape(self) -> int:
        return self.shape.dim

    @property
    def dim(self) -> int:
        return self.shape.dim + self.texture.dim

    # ------------------------------------------------------------------ fitting
    def encode(self, image: np.ndarray, face: Face) -> FaceFit:
        """Fit the model to ``face``: pose, shape and texture coefficients, identity code."""
        l68 = face.landmarks68 if face.landmarks68 is not None else landmarks68(image, face.box)
        l68 = np.asarray(l68, dtype=np.float64)
        pose = fit_pose(l68, image.shape)
        shape_y = self.shape.coefficients(frontal_shape(l68, pose).ravel())
        tex = self.canvas.extract(image, l68)
        detail = self.canvas.to_vector(self.canvas.detail(tex))
        texture_y = self.texture.coefficients(detail)
        code = IdentityCode(self.shape.code(shape_y), self.texture.code(texture_y))
        residual = self.canvas.from_vector(detail - self.texture.reconstruct(texture_y))
        fine = residual - self.canvas.low_pass(residual, FINE_SIGMA)
        return FaceFit(face, l68, pose, shape_y, texture_y, code, tuple(image.shape), {"idiosyncratic": residual - fine})

    # ------------------------------------------------------------------ code space
    def strength(self, a: IdentityCode, b: IdentityCode) -> float:
        """Distance between two codes in units of the typical distance between two people."""
        return float(np.linalg.norm(a.vector() - b.vector()) / math.sqrt(2 * self.dim))

    def sample(self, rng) -> IdentityCode:
        """A synthetic identity: a draw from the model's identity distribution N(0, I) (no real person)."""
        return IdentityCode.from_vector(rng.normal(self.dim), self.n_shape)

    def k_anonymous_target(self, code: IdentityCode, k: int = 5, exclude_nearest: int = 0) -> IdentityCode:
        """Mean of the ``k`` model people nearest to ``code`` (k-Same-M style; no single real person)."""
        d = np.linalg.norm(self.identity_means - code.vector(), axis=1)
        idx = np.argsort(d)[exclude_nearest:exclude_nearest + k]
        return IdentityCode.from_vector(self.identity_means[idx].mean(axis=0), self.n_shape)

    def plausible(self, code: IdentityCode) -> tuple[IdentityCode, bool]:
        """The plausibility check: a code outside the model's distribution (‖c‖² above the
        :data:`PLAUSIBLE_QUANTILE` of χ²) is pulled back onto that boundary. Returns (code, was_inside)."""
        v = code.vector()
        limit = math.sqrt(chi2.ppf(PLAUSIBLE_QUANTILE, self.dim))
        n = float(np.linalg.norm(v))
        if n <= limit:
            return code, True
        return IdentityCode.from_vector(v * (limit / n), self.n_shape), False

    def move(self, code: IdentityCode, toward: IdentityCode, strength: float) -> IdentityCode:
        """``code`` moved by ``strength`` (units of the between-person distance) towards ``toward``."""
        d = toward.vector() - code.vector()
        n = float(np.linalg.norm(d))
        if n == 0:
            return code
        step = strength * math.sqrt(2 * self.dim)
        return IdentityCode.from_vector(code.vector() + d / n * step, self.n_shape)

    # ------------------------------------------------------------------ geometry
    def _ring_image(self, fit: FaceFit) -> np.ndarray:
        """The warp's fixed ring in image coordinates (projected like the landmarks, z = jaw depth);
        computed once per fit."""
        if "ring" not in fit.extra:
            z = np.full((len(self.ring), 1), float(np.median(FACE_3D_68[:17, 2])))
            pts = np.concatenate([self.ring, z], axis=1)
            fit.extra["ring"] = fit.pose.scale * (pts @ fit.pose.rotation.T)[:, :2] + fit.pose.shift
        return fit.extra["ring"]

    def frontal_offsets(self, fit: FaceFit, code: IdentityCode) -> np.ndarray:
        """Frontal-frame landmark displacement (68, 2) that moves the shape identity to ``code.shape``
        and leaves every non-identity coordinate of the shape as it was."""
        dy = self.shape.displacement(code.shape - fit.code.shape)
        y = np.clip(fit.shape_y + dy, -PCA_CLAMP * self.shape.pca_std, PCA_CLAMP * self.shape.pca_std)
        return ((y - fit.shape_y) @ self.shape.basis).reshape(68, 2)

    def target_landmarks(self, fit: FaceFit, d_frontal: np.ndarray) -> tuple[np.ndarray, float]:
        """The new 68 landmarks: the frontal displacement re-projected with the face's own pose, and
        the fraction of it applied (halved until the warp mesh has no fold-over)."""
        if "expression_jacobian" not in fit.extra:
            fit.extra["expression_jacobian"] = expression_jacobian(fit.l68)
        offsets = keep_expression(fit.extra["expression_jacobian"], fit.pose.to_image(d_frontal))
        ring = self._ring_image(fit)
        src = np.concatenate([fit.l68, ring])
        for k in range(6):
            frac = 0.5**k
            dst = np.concatenate([fit.l68 + frac * offsets, ring])
            if fold_overs(dst, self.geo_triangles, reference=src) == 0:
                return fit.l68 + frac * offsets, frac
        return fit.l68.copy(), 0.0

    def warp_roi(self, fit: FaceFit) -> tuple[int, int, int, int]:
        ring = self._ring_image(fit)
        return clip_roi((*ring.min(axis=0), *ring.max(axis=0)), fit.image_shape)

    # ------------------------------------------------------------------ rendering
    def texture_delta(self, fit: FaceFit, code: IdentityCode, extra_y: np.ndarray | None = None, suppress: float = 0.0) -> np.ndarray:
        """Canvas-frame change of the detail layer (size, size, 3) for the texture part of ``code``;
        ``suppress`` ∈ [0, 1] also removes that fraction of the face's *idiosyncratic* detail — what
        the texture model cannot explain (person-specific marks and contours), above the finest band
        (σ < :data:`FINE_SIGMA`, skin grain and noise, which stays so that the photo keeps its look)."""
        dy = self.texture.displacement(code.texture - fit.code.texture)
        if extra_y is not None:
            dy = dy + extra_y
        y = np.clip(fit.texture_y + dy, -PCA_CLAMP * self.texture.pca_std, PCA_CLAMP * self.texture.pca_std)
        delta = self.canvas.from_vector((y - fit.texture_y) @ self.texture.basis)
        if suppress > 0:
            delta = delta - float(suppress) * fit.extra["idiosyncratic"]
        return delta

    def canvas_map(self, target_l68: np.ndarray, roi: tuple[int, int, int, int]):
        """Dense map from image pixels (inside the new 68-point mesh) to canvas coordinates."""
        return piecewise_affine_map(target_l68, self.canvas.points, self.canvas.triangles, roi)

    def _geometry(self, img: np.ndarray, fit: FaceFit, d_frontal: np.ndarray):
        """Warp the photo to the new landmarks: (target, frac, roi, warped ROI base, alpha, canvas map)."""
        target, frac = self.target_landmarks(fit, d_frontal)
        roi = self.warp_roi(fit)
        x0, y0, x1, y1 = roi
        ring = self._ring_image(fit)
        geo = piecewise_affine_map(np.concatenate([target, ring]), np.concatenate([fit.l68, ring]), self.geo_triangles, roi)
        warped = cv2.remap(img, geo.map_x, geo.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        base = img[y0:y1, x0:x1].astype(np.float32).copy()
        base[geo.inside] = warped[geo.inside]
        cmap = self.canvas_map(target, roi)
        alpha = cv2.remap(self._alpha, cmap.map_x, cmap.map_y, cv2.INTER_LINEAR, borderValue=0) * cmap.inside
        return target, frac, roi, base, alpha, cmap

    def plan_edit(self, image: np.ndarray, fit: FaceFit, code: IdentityCode, refine: Any = None, suppress: float = 0.0) -> "FaceEdit":
        """The identity edit that gives ``fit``'s face the identity ``code``: a frontal-frame landmark
        displacement and a canvas-frame change of the detail layer (refined against the recognizer
        when ``refine`` — a :class:`facedeid.model.refine.RefineSettings` — is given). Pose-free, so
        the same edit can be applied to other frames of the same face (Ch. 8.4.3). ``refine`` may
        also be a :class:`facedeid.model.anchor.AnchorSettings` (recognizer-anchored rendering)."""
        img = np.asarray(image)
        code, inside = self.plausible(code)
        d_frontal = self.frontal_offsets(fit, code)
        delta_canvas = self.texture_delta(fit, code, suppress=suppress)
        report: dict[str, Any] = {"code_inside_model": inside, "strength": round(self.strength(fit.code, code), 4)}
        if refine is not None and refine.steps > 0:
            target, _, roi, base, alpha, cmap = self._geometry(img, fit, d_frontal)
            extra, rep = refine.run(self, img, fit, target, roi, base, alpha, cmap, delta_canvas)
            delta_canvas = delta_canvas + extra
            report["refine"] = rep
        return FaceEdit(d_frontal=d_frontal, texture=delta_canvas.astype(np.float32), code=code, report=report)

    def apply_edit(self, image: np.ndarray, fit: FaceFit, edit: "FaceEdit") -> Rendered:
        """Apply an identity edit to ``fit``'s face in a copy of ``image`` (RGB uint8)."""
        img = np.asarray(image)
        target, frac, roi, base, alpha, cmap = self._geometry(img, fit, edit.d_frontal)
        x0, y0, x1, y1 = roi
        delta = cv2.remap(edit.texture, cmap.map_x, cmap.map_y, cv2.INTER_LINEAR, borderValue=0)
        out_roi = np.clip(base + alpha[..., None] * delta, 0, 255)
        out = img.copy()
        out[y0:y1, x0:x1] = np.rint(out_roi).astype(img.dtype)
        return Rendered(out, target, {**edit.report, "shape_fraction": frac})

    def render(self, image: np.ndarray, fit: FaceFit, code: IdentityCode, refine: Any = None, suppress: float = 0.0) -> Rendered:
        """Render ``fit``'s face with identity ``code`` into a copy of ``image`` (RGB uint8)."""
        return self.apply_edit(image, fit, self.plan_edit(image, fit, code, refine, suppress))


def _openness(l68: np.ndarray) -> np.ndarray:
    from ..metrics.utility import expression_ratios

    r = expression_ratios(l68)
    return np.array([r["mouth_open"], r["eye_open_right"], r["eye_open_left"]])


def expression_jacobian(l68: np.ndarray, h: float = 0.05) -> np.ndarray:
    """(3, 136) Jacobian of the mouth and eye openness ratios at the face's own landmarks (central
    differences with step ``h`` px)."""
    flat = np.asarray(l68, dtype=np.float64).ravel()
    jac = np.zeros((3, flat.size))
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = h
        jac[:, i] = (_openness((flat + e).reshape(68, 2)) - _openness((flat - e).reshape(68, 2))) / (2 * h)
    return jac


def keep_expression(jac: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``offsets`` without the component that would change the mouth and eye openness ratios (the
    expression measures of the evaluation): projected onto the null space of their Jacobian ``jac``
    (:func:`expression_jacobian`; first order)."""
    if not np.isfinite(jac).all():
        return offsets
    o = np.asarray(offsets, dtype=np.float64).ravel()
    gram = jac @ jac.T + 1e-9 * np.eye(3)
    return (o - jac.T @ np.linalg.solve(gram, jac @ o)).reshape(68, 2)


@functools.lru_cache(maxsize=2)
def load_model(path: str | None = None) -> FaceModel:
    """The shipped model (cached per process)."""
    return FaceModel.load(path)
