"""Adversarial de-identification (book Ch. 3.1.3): small, bounded pixel perturbations of the face that
push a recognizer's embedding away from the person.

* ``adv-pgd`` — untargeted projected gradient descent (Madry et al. 2018): maximise the dlib embedding
  distance ‖f(x + δ) − f(x)‖ subject to ‖δ‖∞ ≤ ε, with a random start.
* ``adv-target`` — targeted, in the spirit of TIP-IM (Yang et al. 2021): pull f(x + δ) towards a
  *synthetic* identity t = ‖f(x)‖·(cos θ·f̂(x) + sin θ·u), u a random unit direction orthogonal to f(x)
  (drawn from ``ctx.rng``, or derived from ``key`` so that every photo of a person gets the same
  direction), θ chosen so that ‖t − f(x)‖ = ``target_distance``. A total-variation penalty on δ keeps
  the perturbation smooth (the naturalness term); updates use momentum (MI-FGSM, Dong et al. 2018).
* ``adv-opom`` — one person-specific mask (OPOM, Zhong & Deng 2022): a perturbation defined in dlib's
  aligned 150×150 chip frame, fitted with :func:`fit_person_mask` on several photos of one person
  (maximising the distance to the person's feature centre, "OPOM-ClassCenter"), saved as ``.npz`` and
  warped *unchanged* onto each new photo's face (``adv-opom:mask=person.npz``).

All three act only inside the face region (``region``/``margin``/``feather`` as every region method):
the perturbation is multiplied by the region's feathered alpha, so pixels outside the region's support
never change, and the published change of every pixel is an integer within ±⌊ε⌋ (0–255 units). With
``min_ssim`` > 0 every step is backed off (δ scaled down, by bisection) so that the SSIM of the face
region stays at or above it. ``ensemble=true`` optimises the expectation over transformations (EOT,
Athalye et al. 2018): a horizontal flip, a down-and-up resize (×0.5 … 0.9), a JPEG re-compression
(quality 50 … 95; straight-through: real JPEG forward, identity backward) and a small landmark jitter
(a different crop), each step.

Gradients come from the PyTorch port of dlib's ResNet (:mod:`facedeid.identity.torch_dlib`) through
dlib's own differentiable chip extraction, so the attack is white-box against ``DlibRecognizer``;
any other recognizer (MobileFaceNet in the benchmark) sees a *transfer* attack. Known weakness: the
perturbation is a high-frequency signal; JPEG re-compression and down-scaling remove much of it
(``benchmarks/adversarial_lfw.py`` measures by how much). ``ensemble=true`` recovers part of it.

Torch runs with ``$FACEDEID_TORCH_THREADS`` threads (default 1) inside the methods, restored after.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from ..errors import BadArguments
from ..faces.masks import REGIONS, face_region
from ..faces.types import Face
from ..identity.torch_dlib import THREADS_ENV, torch_threads  # noqa: F401  (re-exported)
from ..identity.torch_dlib import CHIP_SIZE, CHIP_PADDING, DlibResNet, face_chip_details, face_chips_torch, load_dlib_resnet, plan_chips
from ..privacy.randomness import PrivacyRandom
from .base import Context, MethodOutput, RegionMethod, RegionParams, register

DLIB_THRESHOLD = 0.6
_FLIP_ORDER = [2, 3, 0, 1, 4]  # dlib's 5 points after a horizontal mirror
_VIEW_KINDS = ("plain", "flip", "resize", "jpeg", "resize+jpeg", "flip+jpeg", "flip+resize", "flip+resize+jpeg")


# --------------------------------------------------------------------------------------------- common
@functools.cache
def _net() -> DlibResNet:
    return load_dlib_resnet()


def _rgb(image: np.ndarray) -> np.ndarray:
    img = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def _points(face: Face) -> np.ndarray:
    """The face's 5 points rounded as dlib's recognizer takes them (DlibRecognizer rounds too)."""
    return np.round(np.asarray(face.landmarks5, dtype=np.float64)).reshape(5, 2)


def region_ssim(a: np.ndarray, b: np.ndarray, support: np.ndarray) -> float:
    """SSIM of two ROIs (Wang et al. 2004, Gaussian window σ = 1.5, as :func:`metrics.quality.ssim`),
    the SSIM map averaged over the pixels of ``support`` (the face region)."""
    if min(a.shape[:2]) < 11 or not support.any():
        return 1.0
    _, smap = structural_similarity(a, b, data_range=255, channel_axis=-1 if a.ndim == 3 else None, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    smap = smap.mean(axis=-1) if smap.ndim == 3 else smap
    return float(smap[support].mean())


@dataclass(frozen=True)
class AdvParams(RegionParams):
    """Shared by the adversarial methods. ``eps``: L∞ budget in 0–255 units; ``steps``/``step``: PGD
    iterations and step size (0 = 2.5·eps/steps, Madry et al.); ``min_ssim``: face-region SSIM floor
    (0 = off); ``ensemble``: optimise over ``ensemble_size`` transformed views per step (EOT)."""

    eps: float = 8.0
    steps: int = 10
    step: float = 0.0
    min_ssim: float = 0.0
    random_start: bool = True
    ensemble: bool = False
    ensemble_size: int = 4

    def validate(self) -> None:
        if not 0 < self.eps <= 255:
            raise ValueError("eps must be in (0, 255] (0–255 pixel units)")
        if self.steps < 1 or self.step < 0:
            raise ValueError("steps must be ≥ 1 and step ≥ 0")
        if not 0 <= self.min_ssim < 1:
            raise ValueError("min_ssim must be in [0, 1)")
        if self.ensemble_size < 1:
            raise ValueError("ensemble_size must be ≥ 1")

    @property
    def step_size(self) -> float:
        return self.step if self.step > 0 else 2.5 * self.eps / self.steps


# --------------------------------------------------------------------------------------------- views (EOT)
@dataclass(frozen=True)
class View:
    """One transformation of the ensemble: mirror, down-and-up resize factor (1 = none), JPEG quality
    (0 = none), and a similarity jitter of the landmarks (scale, angle, shift) standing for another crop."""

    flip: bool = False
    scale: float = 1.0
    jpeg: int = 0
    jitter: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)


PLAIN = View()


def sample_views(k: int, rng: PrivacyRandom) -> list[View]:
    """``k`` views: the plain image first, then flip, resize, JPEG and their combinations, each with
    random parameters and a landmark jitter (±4 % scale, ±3°, ±1.5 px)."""
    views = [PLAIN]
    for i in range(1, k):
        kind = _VIEW_KINDS[i % len(_VIEW_KINDS)]
        u = rng.uniform(6)
        jitter = (1 + 0.08 * (u[3] - 0.5), math.radians(6 * (u[4] - 0.5)), 3 * (u[5] - 0.5), 3 * (u[0] - 0.5))
        views.append(View(flip="flip" in kind, scale=0.5 + 0.4 * float(u[1]) if "resize" in kind else 1.0,
                          jpeg=int(50 + 45 * u[2]) if "jpeg" in kind else 0, jitter=jitter))
    return views


def _jpeg_straight_through(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Real JPEG re-compression forward, identity backward (straight-through estimator)."""
    img = np.clip(np.rint(x.detach().cpu().numpy()), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else img
    return x + (torch.from_numpy(np.ascontiguousarray(dec)).to(x) - x).detach()


def apply_view(x: torch.Tensor, points: np.ndarray, view: View) -> tuple[torch.Tensor, np.ndarray]:
    """Transform an (H, W, 3) float image and its 5 points as ``view`` says (differentiably, except the
    JPEG step which is straight-through)."""
    h, w = x.shape[:2]
    pts = np.asarray(points, dtype=np.float64).copy()
    if view.scale != 1.0:
        t = x.permute(2, 0, 1)[None]
        small = F.interpolate(t, size=(max(1, round(h * view.scale)), max(1, round(w * view.scale))), mode="bilinear",
                              antialias=True, align_corners=False)
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    if view.jpeg:
        x = _jpeg_straight_through(x, view.jpeg)
    if view.flip:
        x = x.flip(1)
        pts[:, 0] = w - 1 - pts[:, 0]
        pts = pts[_FLIP_ORDER]
    s, a, dx, dy = view.jitter
    if (s, a, dx, dy) != (1.0, 0.0, 0.0, 0.0):
        c = pts.mean(axis=0)
        rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = (pts - c) @ rot.T + c + [dx, dy]
    return x, pts


def embed_views(images: Sequence[torch.Tensor], points: Sequence[np.ndarray], views: Sequence[View]) -> torch.Tensor:
    """dlib embeddings (len(images)·len(views), 128) of every image under every view, in one batch."""
    chips = []
    for x, p in zip(images, points):
        for v in views:
            xv, pv = apply_view(x, p, v)
            chips.append(face_chips_torch(xv, pv[None]))
    return _net()(torch.cat(chips))


# --------------------------------------------------------------------------------------------- one face
@dataclass
class FaceWork:
    """One face's optimisation window: the part of the image that dlib's chip reads (and the region),
    aligned to the 16-pixel JPEG grid, with the region's alpha and the per-pixel bounds of the budget."""

    window: tuple[int, int, int, int]
    roi_in_window: tuple[int, int, int, int]
    base: torch.Tensor  # (h, w, 3) current pixels of the window (earlier faces' changes included)
    orig: np.ndarray  # (h, w, 3) uint8 original pixels of the window
    lo: torch.Tensor  # (h, w, 3) lowest allowed value: max(0, original − ⌊ε⌋) inside the support, base outside
    hi: torch.Tensor
    alpha: torch.Tensor  # (rh, rw, 1) region alpha
    support: np.ndarray  # (rh, rw) bool, alpha > 0
    points: np.ndarray  # (5, 2) landmarks in window coordinates
    roi: tuple[int, int, int, int]

    @staticmethod
    def build(original: np.ndarray, current: np.ndarray, face: Face, p: RegionParams, eps: float) -> "FaceWork":
        H, W = original.shape[:2]
        region = face_region(face, original.shape, p.region, p.margin, p.feather)
        pts = _points(face)
        (cx0, cy0, cx1, cy1), _, _ = plan_chips([face_chip_details(pts)], W, H)
        rx0, ry0, rx1, ry1 = region.roi
        x0, y0 = max(0, (min(cx0, rx0) - 8) // 16 * 16), max(0, (min(cy0, ry0) - 8) // 16 * 16)
        x1, y1 = min(W, max(cx1, rx1) + 8), min(H, max(cy1, ry1) + 8)
        base = torch.from_numpy(current[y0:y1, x0:x1].astype(np.float32))
        orig = torch.from_numpy(original[y0:y1, x0:x1].astype(np.float32))
        alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
        alpha[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0] = region.alpha
        inside = torch.from_numpy(alpha > 0)[..., None]
        e = float(math.floor(eps + 1e-9))
        lo = torch.where(inside, (orig - e).clamp(0, 255), base)
        hi = torch.where(inside, (orig + e).clamp(0, 255), base)
        return FaceWork((x0, y0, x1, y1), (rx0 - x0, ry0 - y0, rx1 - x0, ry1 - y0), base, original[y0:y1, x0:x1], lo, hi,
                        torch.from_numpy(region.alpha)[..., None], region.alpha > 0, pts - [x0, y0], region.roi)

    def image(self, pert_roi: torch.Tensor) -> torch.Tensor:
        """The window with ``pert_roi`` (ROI-sized, already multiplied by alpha) added, within the budget."""
        a, b, c, d = self.roi_in_window
        w = self.base.shape[1]
        full = F.pad(pert_roi.permute(2, 0, 1), (a, w - c, b, self.base.shape[0] - d)).permute(1, 2, 0)
        return torch.maximum(torch.minimum(self.base + full, self.hi), self.lo)

    def publish(self, pert_roi: torch.Tensor) -> np.ndarray:
        """Integer pixels of the window for a perturbation: rounded, inside the budget."""
        with torch.no_grad():
            return torch.round(self.image(pert_roi)).clamp(0, 255).numpy().astype(np.uint8)

    def roi_pixels(self, window_pixels: np.ndarray) -> np.ndarray:
        a, b, c, d = self.roi_in_window
        return window_pixels[b:d, a:c]

    def ssim(self, pert_roi: torch.Tensor) -> float:
        """Face-region SSIM against the original pixels."""
        return region_ssim(self.roi_pixels(self.orig), self.roi_pixels(self.publish(pert_roi)), self.support)

    def back_off(self, pert: Callable[[float], torch.Tensor], min_ssim: float, iterations: int = 7) -> float:
        """The largest factor s ∈ [0, 1] (bisection) with face-region SSIM(pert(s)) ≥ ``min_ssim``."""
        if min_ssim <= 0 or self.ssim(pert(1.0)) >= min_ssim:
            return 1.0
        lo, hi = 0.0, 1.0
        for _ in range(iterations):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.ssim(pert(mid)) >= min_ssim else (lo, mid)
        return lo


def _tv(p: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation (mean absolute neighbour difference) of an (h, w, c) perturbation."""
    return (p[1:] - p[:-1]).abs().mean() + (p[:, 1:] - p[:, :-1]).abs().mean()


def _random_direction(e0: torch.Tensor, key: str, rng: PrivacyRandom) -> torch.Tensor:
    """A unit direction u ⟂ e0 in embedding space: from ``key`` (SHA-256-seeded, the same for every photo)
    if given, else from ``rng``."""
    e = e0.detach().double().numpy()
    if key:
        seed = int.from_bytes(hashlib.sha256(("facedeid-adv-target|" + key).encode()).digest()[:8], "little")
        z = np.random.default_rng(seed).normal(size=e.shape)
    else:
        z = rng.normal(e.shape)
    u = z - (z @ e) / (e @ e) * e
    return torch.from_numpy(u / np.linalg.norm(u)).float()


def synthetic_target(work: "FaceWork", e0: torch.Tensor, distance: float, key: str, rng: PrivacyRandom, eps: float) -> torch.Tensor:
    """A synthetic identity t with ‖t − e0‖ = ``distance``, in a direction the face can actually reach.

    A random direction u (:func:`_random_direction`) in 128 dimensions is mostly out of reach of a small
    perturbation (PGD gets about half-way along it). So u is pushed through the network's own Jacobian
    once: the direction is that of f(x + ε·sign(∇ₓ u·f(x))) − f(x), the embedding change of one signed
    step towards u — random (it follows u) and reachable (a perturbation produced it). No real person's
    embedding is involved."""
    u = _random_direction(e0, key, rng)
    pert = torch.zeros((*work.alpha.shape[:2], 3), requires_grad=True)
    e = embed_views([work.image(pert * work.alpha)], [work.points], [PLAIN])[0]
    (g,) = torch.autograd.grad(e @ u, pert)
    with torch.no_grad():
        moved = embed_views([work.image(eps * g.sign() * work.alpha)], [work.points], [PLAIN])[0] - e0
    d = moved if float(moved.norm()) > 1e-6 else u
    return e0 + distance * d / d.norm()


class AdversarialMethod(RegionMethod):
    """Shared PGD machinery: one face at a time, a perturbation over the face's ROI (times the region's
    alpha), projected onto the ε-ball after every step, backed off for ``min_ssim``."""

    momentum: ClassVar[float] = 0.0

    def objective(self, emb: torch.Tensor, e0: torch.Tensor, pert: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """Value to maximise for the (views, 128) embeddings of the perturbed face."""
        raise NotImplementedError

    def prepare(self, work: FaceWork, e0: torch.Tensor, ctx: Context) -> dict[str, Any]:
        return {}

    def transform(self, roi, region, face, ctx):  # pragma: no cover - apply() is overridden
        raise NotImplementedError

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        p: AdvParams = self.params  # type: ignore[assignment]
        original = _rgb(image)
        out = original.copy()
        rows = []
        with torch_threads() as threads:
            for face in faces:
                t0 = time.perf_counter()
                work = FaceWork.build(original, out, face, p, p.eps)
                row = self._attack(work, ctx)
                x0, y0, x1, y1 = work.window
                out[y0:y1, x0:x1] = row.pop("pixels")
                row["seconds"] = round(time.perf_counter() - t0, 3)
                rows.append(row)
        result = out if image.ndim == 3 and image.shape[2] == 3 else _back_to_layout(image, out)
        return MethodOutput(result, {"adversarial": rows, "torch_threads": threads})

    def _attack(self, work: FaceWork, ctx: Context) -> dict[str, Any]:
        p: AdvParams = self.params  # type: ignore[assignment]
        net = _net()
        with torch.no_grad():
            e0 = net(face_chips_torch(work.base, work.points[None]))[0]
        state = self.prepare(work, e0, ctx)
        eps, step = float(p.eps), p.step_size
        shape = (*work.alpha.shape[:2], 3)
        delta = torch.from_numpy((ctx.rng.uniform(shape) * 2 - 1) * eps).float() if p.random_start else torch.zeros(shape)
        grad_m = torch.zeros(shape)
        best, best_value = delta.clone(), -math.inf
        for k in range(p.steps + 1):
            views = sample_views(p.ensemble_size, ctx.rng) if p.ensemble else [PLAIN]
            delta.requires_grad_(True)
            pert = delta * work.alpha
            emb = embed_views([work.image(pert)], [work.points], views)
            value = self.objective(emb, e0, pert, state)
            if float(value.detach()) > best_value:
                best_value, best = float(value.detach()), delta.detach().clone()
            if k == p.steps:
                break
            (grad,) = torch.autograd.grad(value, delta)
            with torch.no_grad():
                if self.momentum:
                    grad_m = self.momentum * grad_m + grad / grad.abs().mean().clamp_min(1e-12)
                    grad = grad_m
                delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
                if p.min_ssim > 0:
                    d = delta
                    delta = d * work.back_off(lambda s: s * d * work.alpha, p.min_ssim)
        pixels, row = self._finish(work, best * work.alpha, p.min_ssim)
        with torch.no_grad():
            e1 = net(face_chips_torch(torch.from_numpy(pixels.astype(np.float32)), work.points[None]))[0]
        row.update(dlib_distance=round(float((e1 - e0).norm()), 4), pixels=pixels)
        if "target" in state:
            row["target_distance_before"] = round(float((e0 - state["target"]).norm()), 4)
            row["target_distance_after"] = round(float((e1 - state["target"]).norm()), 4)
        return row

    @staticmethod
    def _finish(work: FaceWork, pert: torch.Tensor, min_ssim: float) -> tuple[np.ndarray, dict[str, Any]]:
        """Publish a perturbation (ROI-sized, alpha applied): round it, keep the budget, and back off
        (×0.9 at a time) until the face-region SSIM floor holds on the integer pixels too."""
        pert = pert.detach()
        scale = 1.0
        if min_ssim > 0:
            for _ in range(60):
                if work.ssim(scale * pert) >= min_ssim:
                    break
                scale *= 0.9
        pixels = work.publish(scale * pert)
        clean = work.roi_pixels(work.orig)
        changed = work.roi_pixels(pixels).astype(int) - clean.astype(int)
        ssim_face = region_ssim(clean, work.roi_pixels(pixels), work.support)
        return pixels, {"linf": int(np.abs(changed).max(initial=0)), "face_ssim": round(ssim_face, 4), "backoff": round(scale, 4)}


def _back_to_layout(image: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.rint(rgb.astype(np.float64).mean(axis=-1)).astype(image.dtype)
    out = image.copy()
    out[..., :3] = rgb
    return out


# --------------------------------------------------------------------------------------------- methods
@register
class AdvPGD(AdversarialMethod):
    name: ClassVar[str] = "adv-pgd"
    reference: ClassVar[str] = "Ch. 3.1.3 (adversarial perturbation; PGD, Madry et al. 2018): max ‖f(x+δ) − f(x)‖, ‖δ‖∞ ≤ ε"
    summary: ClassVar[str] = "untargeted PGD on the face region against dlib's embedding (L∞ budget eps, 0–255)"

    @dataclass(frozen=True)
    class Params(AdvParams):
        pass

    def objective(self, emb, e0, pert, state):
        return (emb - e0).norm(dim=1).mean()


@register
class AdvTarget(AdversarialMethod):
    name: ClassVar[str] = "adv-target"
    reference: ClassVar[str] = ("Ch. 3.1.3 (targeted identity protection, TIP-IM, Yang et al. 2021; MI-FGSM, Dong et al. 2018): "
                                "min ‖f(x+δ) − t‖ + λ·TV(δ), t a synthetic identity")
    summary: ClassVar[str] = "targeted PGD towards a synthetic identity (random or key-seeded direction) with a TV naturalness term"
    momentum: ClassVar[float] = 1.0

    @dataclass(frozen=True)
    class Params(AdvParams):
        target_distance: float = 1.0  # ‖t − f(x)‖; dlib's τ is 0.6, different LFW people are ≈ 0.83 apart
        tv: float = 0.5  # weight of the total-variation penalty (TV(δ)/ε)
        key: str = ""  # non-empty: the target direction comes from this key (same pseudonym for every photo)

        def validate(self) -> None:
            super().validate()
            if not 0 < self.target_distance <= 2.5 or self.tv < 0:
                raise ValueError("need 0 < target_distance ≤ 2.5 and tv ≥ 0")

    def prepare(self, work, e0, ctx):
        p: AdvTarget.Params = self.params  # type: ignore[assignment]
        return {"target": synthetic_target(work, e0, p.target_distance, p.key, ctx.rng, p.eps)}

    def objective(self, emb, e0, pert, state):
        p: AdvTarget.Params = self.params  # type: ignore[assignment]
        return -(emb - state["target"]).norm(dim=1).mean() - p.tv * _tv(pert) / p.eps


# --------------------------------------------------------------------------------------------- OPOM
MASK_FORMAT = "facedeid-opom-1"


@dataclass
class PersonMask:
    """A person's universal perturbation in dlib's aligned chip frame: ``delta`` (3, size, size) float32
    in 0–255 units with ‖delta‖∞ ≤ ``eps``; ``padding`` is the chip padding (dlib: 0.25)."""

    delta: np.ndarray
    eps: float
    size: int = CHIP_SIZE
    padding: float = CHIP_PADDING
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = np.asarray(self.delta, dtype=np.float32)
        if d.shape != (3, self.size, self.size) or not np.isfinite(d).all():
            raise ValueError(f"a person mask is a finite (3, {self.size}, {self.size}) array, got {d.shape}")
        if not 0 < self.eps <= 255 or np.abs(d).max(initial=0) > self.eps + 1e-4:
            raise ValueError("mask values exceed its eps")
        self.delta = d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, format=np.array(MASK_FORMAT), delta=self.delta, eps=np.float64(self.eps),
                                size=np.int64(self.size), padding=np.float64(self.padding), meta=np.array(json.dumps(self.meta)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PersonMask":
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                if str(z["format"]) != MASK_FORMAT:
                    raise ValueError(f"not a {MASK_FORMAT} file")
                return cls(z["delta"], float(z["eps"]), int(z["size"]), float(z["padding"]), json.loads(str(z["meta"])))
        except (OSError, KeyError, ValueError) as exc:
            raise BadArguments(f"cannot read person mask {path}: {exc}") from None


def chip_grid(points: np.ndarray, roi_origin: tuple[int, int], roi_shape: tuple[int, int], size: int = CHIP_SIZE,
              padding: float = CHIP_PADDING) -> torch.Tensor:
    """``grid_sample`` grid (1, h, w, 2) that reads a (size × size) chip-frame array at every pixel of an
    ROI: the inverse of dlib's chip mapping (the same rectangle and angle as ``face_chip_details``)."""
    d = face_chip_details(points, size, padding)
    x0, y0, x1, y1 = d.rect
    c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    rot = np.array([[math.cos(d.angle), -math.sin(d.angle)], [math.sin(d.angle), math.cos(d.angle)]])
    tl = rot @ (np.array([x0, y0]) - c) + c
    # chip (col, row) → image (x, y) = tl + M·(col, row); M's columns are the chip's x and y axes
    m = rot * ((x1 - x0) / max(d.cols - 1, 1))
    h, w = roi_shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xy = np.stack([xs + roi_origin[0] - tl[0], ys + roi_origin[1] - tl[1]], axis=-1)
    cr = xy @ np.linalg.inv(m).T
    grid = np.stack([2 * cr[..., 0] / (d.cols - 1) - 1, 2 * cr[..., 1] / (d.rows - 1) - 1], axis=-1)
    return torch.from_numpy(grid).float()[None]


def warp_mask(delta_chip: torch.Tensor, grid: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The chip-frame perturbation (3, S, S) sampled onto an ROI (h, w, 3), times the region alpha.
    Bilinear sampling is a convex combination, so the L∞ bound carries over; zero outside the chip."""
    return F.grid_sample(delta_chip[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0].permute(1, 2, 0) * alpha


@dataclass(frozen=True)
class PersonMaskParams(AdvParams):
    """Fitting a person mask: as :class:`AdvParams`, with the ensemble on by default, and ``smooth``: σ
    (chip pixels) of a Gaussian applied to every gradient (translation-invariant attack, Dong et al. 2019).
    Both make the mask less tied to the exact alignment of the fitting photos; on three LFW people (fit on
    4 photos, ε = 8, 20 steps) the mean dlib distance on their unseen photos went 0.42 → 0.51 (smooth = 2)
    → 0.54 (and ensemble)."""

    steps: int = 20
    ensemble: bool = True
    smooth: float = 2.0

    def validate(self) -> None:
        super().validate()
        if self.smooth < 0:
            raise ValueError("smooth must be ≥ 0")


def gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (σ in pixels, reflect border) of a (C, H, W) tensor."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def _window_grid(work: FaceWork, size: int, padding: float) -> torch.Tensor:
    x0, y0 = work.window[:2]
    a, b, c, d = work.roi_in_window
    return chip_grid(work.points + [x0, y0], (x0 + a, y0 + b), (d - b, c - a), size, padding)


def fit_person_mask(images: Sequence[np.ndarray], faces: Sequence[Face], params: AdvParams | None = None,
                    rng: PrivacyRandom | None = None, meta: dict[str, Any] | None = None) -> PersonMask:
    """OPOM (Zhong & Deng 2022), class-centre variant: one chip-frame perturbation δ (‖δ‖∞ ≤ ε) that,
    warped onto every photo (``faces[i]`` is the person's face in ``images[i]``), maximises the mean
    dlib distance of the perturbed photos to the centre of the person's clean embeddings. Momentum
    sign steps (MI-FGSM); with ``ensemble`` every photo is seen under several views per step."""
    p = params or PersonMaskParams()
    if len(images) != len(faces) or not images:
        raise BadArguments("fit_person_mask needs one face per image and at least one image")
    rng = rng or PrivacyRandom()
    eps, step = float(p.eps), p.step_size
    t0 = time.perf_counter()
    with torch_threads():
        works = [FaceWork.build(_rgb(img), _rgb(img), f, p, p.eps) for img, f in zip(images, faces)]
        grids = [_window_grid(w, CHIP_SIZE, CHIP_PADDING) for w in works]
        with torch.no_grad():
            e0 = embed_views([w.base for w in works], [w.points for w in works], [PLAIN])
        centre = e0.mean(dim=0)
        shape = (3, CHIP_SIZE, CHIP_SIZE)
        delta = torch.from_numpy((rng.uniform(shape) * 2 - 1) * eps).float() if p.random_start else torch.zeros(shape)
        grad_m = torch.zeros(shape)
        best, best_value = delta.clone(), -math.inf
        for k in range(p.steps + 1):
            views = sample_views(p.ensemble_size, rng) if p.ensemble else [PLAIN]
            delta.requires_grad_(True)
            imgs = [w.image(warp_mask(delta, g, w.alpha)) for w, g in zip(works, grids)]
            emb = embed_views(imgs, [w.points for w in works], views)
            value = (emb - centre).norm(dim=1).mean()
            if float(value.detach()) > best_value:
                best_value, best = float(value.detach()), delta.detach().clone()
            if k == p.steps:
                break
            (grad,) = torch.autograd.grad(value, delta)
            with torch.no_grad():
                if getattr(p, "smooth", 0) > 0:
                    grad = gaussian_smooth(grad, p.smooth)
                grad_m = grad_m + grad / grad.abs().mean().clamp_min(1e-12)
                delta = (delta.detach() + step * grad_m.sign()).clamp(-eps, eps)
    info = {"photos": len(images), "steps": p.steps, "ensemble": p.ensemble, "objective": round(best_value, 4),
            "fit_seconds": round(time.perf_counter() - t0, 2), "params": asdict(p), **(meta or {})}
    return PersonMask(best.numpy(), eps, CHIP_SIZE, CHIP_PADDING, info)


@functools.lru_cache(maxsize=8)
def _load_mask(path: str, mtime_ns: int) -> PersonMask:
    return PersonMask.load(path)


def load_person_mask(path: str | Path) -> PersonMask:
    p = Path(path)
    if not p.is_file():
        raise BadArguments(f"person mask {path} not found (fit one with facedeid.methods.adversarial.fit_person_mask)")
    return _load_mask(str(p.resolve()), p.stat().st_mtime_ns)


@register
class AdvOPOM(RegionMethod):
    name: ClassVar[str] = "adv-opom"
    reference: ClassVar[str] = "Ch. 3.1.3 (one person, one mask: OPOM, Zhong & Deng 2022; class-centre variant)"
    summary: ClassVar[str] = "apply a person's universal mask (chip frame, .npz from fit_person_mask) unchanged to new photos"

    @dataclass(frozen=True)
    class Params(RegionParams):
        mask: str = ""  # path of the person's .npz mask (required)
        eps: float = 0.0  # 0: the mask's own budget; > 0: clip the mask to ±eps (0–255 units)
        min_ssim: float = 0.0

        def validate(self) -> None:
            if not self.mask:
                raise ValueError("adv-opom needs mask=PATH.npz (fit one with fit_person_mask)")
            if not 0 <= self.eps <= 255 or not 0 <= self.min_ssim < 1:
                raise ValueError("need 0 ≤ eps ≤ 255 and 0 ≤ min_ssim < 1")
            load_person_mask(self.mask)

    def transform(self, roi, region, face, ctx):  # pragma: no cover - apply() is overridden
        raise NotImplementedError

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        p: AdvOPOM.Params = self.params  # type: ignore[assignment]
        if p.region not in REGIONS:
            raise BadArguments(f"region must be one of {', '.join(REGIONS)}")
        mask = load_person_mask(p.mask)
        eps = min(p.eps, mask.eps) if p.eps > 0 else mask.eps
        delta = torch.from_numpy(mask.delta).clamp(-eps, eps)
        original = _rgb(image)
        out = original.copy()
        rows = []
        with torch_threads():
            for face in faces:
                t0 = time.perf_counter()
                work = FaceWork.build(original, out, face, p, eps)
                with torch.no_grad():
                    pert = warp_mask(delta, _window_grid(work, mask.size, mask.padding), work.alpha)
                pixels, row = AdversarialMethod._finish(work, pert, p.min_ssim)
                x0, y0, x1, y1 = work.window
                out[y0:y1, x0:x1] = pixels
                row["seconds"] = round(time.perf_counter() - t0, 3)
                rows.append(row)
        result = out if image.ndim == 3 and image.shape[2] == 3 else _back_to_layout(image, out)
        return MethodOutput(result, {"adversarial": rows, "mask": str(p.mask), "mask_eps": mask.eps})
