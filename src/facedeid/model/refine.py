"""Recognizer-guided refinement of a rendered face (issue "parametric model", item 4).

A few Adam steps on a low-dimensional parameterisation of the appearance change —

* θ: a further step of the *texture identity code* (whitened LDA coordinates), i.e. only along the
  directions in which real people's face detail differs, with a penalty ‖θ‖² that keeps it short;
  The lips are excluded from this change (``keep_expression``), so that the mouth keeps its look;
* g: a smooth brightness field (a 4×4 grid, bilinearly up-sampled to the canvas, the same on all
  channels so it cannot tint the skin), bounded by ``max_colour`` grey levels —

against an ensemble of *views* of the PyTorch port of dlib's recognizer: the face aligned with the
original photo's five points (the best-aligned attacker of the benchmark) and with the rendered
face's own points, each also mirrored. The hinge loss Σ max(0, target − ‖f(x) − f(x₀)‖) stops
pushing once every view is past the target distance. With ``repel`` descriptors r_j the distance of
a view is min(‖f(x) − f(x₀)‖, min_j ‖f(x) − r_j‖): the face must move away from all of them.
MobileFaceNet is never used here (it is the evaluation's independent recognizer), so its figures
stay a transfer test.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..identity.torch_dlib import _model_on, chips_to_tensor, face_chips, face_chips_torch, torch_threads

GRID = 4
#: Step lengths (whitened code units) tried along the first gradient before falling back to Adam.
LINE_STEPS = (3.0, 4.5, 6.0, 8.0, 10.5)


@dataclass(frozen=True)
class RefineSettings:
    steps: int = 12
    target: float = 0.72  # dlib Euclidean distance to reach in every view (τ = 0.6)
    lr: float = 0.35
    reg: float = 0.01
    max_colour: float = 8.0
    flip: bool = False
    line_search: bool = True
    keep_expression: bool = True
    #: Further dlib descriptors (128-D each) that every view must also be ``target`` away from (the
    #: rotation path of video recovery passes estimates of where the masked face came from).
    repel: tuple[tuple[float, ...], ...] = ()

    def run(self, model, img, fit, target68, roi, base, alpha, cmap, delta_canvas):
        """The hook :meth:`facedeid.model.core.FaceModel.plan_edit` calls."""
        return refine_texture(model, img, fit, target68, roi, base, alpha, cmap, delta_canvas, self)


def expression_keep_mask(canvas, grow: float = 2.0) -> np.ndarray:
    """1 − a soft mask of the lips (points 48–67) on the canvas: the refinement leaves the mouth's
    appearance alone, so that expression (mouth openness as landmarks and classifiers see it) stays."""
    import cv2

    m = np.zeros((canvas.size, canvas.size), np.float32)
    cv2.fillPoly(m, [np.round(canvas.points[48:60]).astype(np.int32)], 1.0)
    m = cv2.dilate(m, np.ones((3, 3), np.uint8), iterations=int(grow))
    m = cv2.GaussianBlur(m, (0, 0), grow)
    return (1.0 - np.clip(m, 0, 1)).astype(np.float32)


def moved_points5(l5: np.ndarray, l68: np.ndarray, target68: np.ndarray) -> np.ndarray:
    """The five points after the warp: each moves with its nearest 68-point landmark."""
    d = np.linalg.norm(l5[:, None, :] - l68[None, :, :], axis=2)
    nearest = d.argmin(axis=1)
    return l5 + (target68 - l68)[nearest]


@functools.lru_cache(maxsize=1)
def _net():
    net = _model_on("cpu")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class CanvasWarp:
    """The differentiable path from a canvas-frame change of the detail layer to the warped ROI's
    pixels, shared by the recognizer-guided refinement and the anchored render
    (:mod:`facedeid.model.anchor`): ``delta_canvas`` (the model's planned change) plus an extra
    change, sampled through the canvas map and blended with the feathered alpha onto ``base``."""

    def __init__(self, model, cmap, base: np.ndarray, alpha: np.ndarray, delta_canvas: np.ndarray) -> None:
        canvas = model.canvas
        self.size = size = canvas.size
        self.mask_idx = torch.from_numpy(np.flatnonzero(canvas.mask.ravel())).long()
        self.mask_t = torch.from_numpy(canvas.mask.astype(np.float32))
        self.basis = torch.from_numpy(model.texture.basis.astype(np.float32))  # (P, n*3)
        self.d0 = torch.from_numpy(delta_canvas.astype(np.float32)).permute(2, 0, 1)[None]
        grid = np.stack([2 * cmap.map_x / (size - 1) - 1, 2 * cmap.map_y / (size - 1) - 1], axis=-1)
        self.grid_t = torch.from_numpy(grid.astype(np.float32))[None]
        self.base_t = torch.from_numpy(base)
        self.alpha_t = torch.from_numpy(alpha.astype(np.float32))[..., None]

    def pca_change(self, y: torch.Tensor) -> torch.Tensor:
        """(1, 3, size, size) canvas change of texture PCA coordinates ``y`` (zero off the mask)."""
        flat = torch.zeros(self.size * self.size, 3).index_copy(0, self.mask_idx, (y @ self.basis).view(-1, 3))
        return flat.view(self.size, self.size, 3).permute(2, 0, 1)[None]

    def brightness(self, g: torch.Tensor, amplitude: float) -> torch.Tensor:
        """The smooth brightness field of ``g``, on the canvas mask."""
        return _field(g, amplitude, self.size) * self.mask_t

    def roi(self, extra: torch.Tensor) -> torch.Tensor:
        """The ROI's pixels (h, w, 3) with the planned change plus ``extra``."""
        delta = F.grid_sample(self.d0 + extra, self.grid_t, mode="bilinear", padding_mode="zeros", align_corners=True)
        return (self.base_t + self.alpha_t * delta[0].permute(1, 2, 0)).clamp(0, 255)


def refine_texture(model, img: np.ndarray, fit, target68: np.ndarray, roi, base: np.ndarray, alpha: np.ndarray,
                   cmap, delta_canvas: np.ndarray, s: RefineSettings) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Optimise θ and g (see module doc). Returns (the extra canvas change of the detail layer, report)."""
    t0 = time.perf_counter()
    x0, y0, _, _ = roi
    net = _net()
    canvas = model.canvas
    size = canvas.size
    warp = CanvasWarp(model, cmap, base, alpha, delta_canvas)
    pattern = torch.from_numpy(model.texture.pattern.astype(np.float32))  # (P, m): PCA change per code unit
    l5 = np.round(np.asarray(fit.face.landmarks5, dtype=np.float64))
    views = [l5, np.round(moved_points5(l5, fit.l68, target68))]
    views = [v - (x0, y0) for v in views]
    with torch_threads(), torch.no_grad():
        ref_chip = face_chips(img, [np.asarray(fit.face.landmarks5, dtype=np.float64).round()])
        ref_t = chips_to_tensor(ref_chip)
        e0 = net(torch.cat([ref_t, ref_t.flip(3)]))
    ref = torch.cat([e0[:1]] * len(views) + ([e0[1:]] * len(views) if s.flip else []))
    theta = torch.zeros(pattern.shape[1], requires_grad=True)
    g = torch.zeros((1, 1, GRID, GRID), requires_grad=True)
    opt = torch.optim.Adam([theta, g], lr=s.lr)
    history: list[float] = []
    best = (None, None, -1.0)

    keep_t = torch.from_numpy(expression_keep_mask(canvas)) if s.keep_expression else torch.ones(size, size)

    def extra_canvas(theta_v: torch.Tensor) -> torch.Tensor:
        return warp.pca_change(theta_v @ pattern.T) * keep_t

    def render(theta_v: torch.Tensor, g_v: torch.Tensor) -> torch.Tensor:
        return warp.roi(extra_canvas(theta_v) + warp.brightness(g_v, s.max_colour))

    def distances(theta_v: torch.Tensor, g_v: torch.Tensor) -> torch.Tensor:
        chips = face_chips_torch(render(theta_v, g_v), views)
        if s.flip:
            chips = torch.cat([chips, chips.flip(3)])
        emb = net(chips)
        dist = (emb - ref).norm(dim=1)
        for r in repel:
            dist = torch.minimum(dist, (emb - r).norm(dim=1))
        return dist

    repel = [torch.tensor(r, dtype=torch.float32)[None] for r in s.repel]
    steps = 0
    with torch_threads():
        for steps in range(1, s.steps + 1):
            dist = distances(theta, g)
            dmin = float(dist.detach().min())
            history.append(round(dmin, 4))
            if dmin > best[2]:
                best = (theta.detach().clone(), g.detach().clone(), dmin)
            if dmin >= s.target:
                break
            loss = torch.relu(s.target + 0.03 - dist).sum() + s.reg * (theta**2).mean()
            opt.zero_grad()
            loss.backward()
            if steps == 1 and s.line_search:
                found = _line_search(distances, theta, g, s, history)
                if found is not None:
                    best = found
                    break
            opt.step()
    theta_b, g_b, dmin = best
    with torch.no_grad():
        colour = warp.brightness(g_b, s.max_colour)
        extra = extra_canvas(theta_b)[0].permute(1, 2, 0).numpy()
    report = {"steps": steps, "min_view_distance": round(dmin, 4), "history": history,
              "seconds": round(time.perf_counter() - t0, 3)}
    report["code_step"] = round(float(theta_b.norm()), 3)
    return extra + colour[0].permute(1, 2, 0).expand(size, size, 3).numpy(), report


def _line_search(distances, theta: torch.Tensor, g: torch.Tensor, s: "RefineSettings", history: list[float]):
    """From the first gradient, try growing steps of the texture code along it (forward passes only;
    the brightness field stays for Adam) until every view is past the target: usually one backward
    and two or three forward passes instead of five Adam steps."""
    with torch.no_grad():
        gt = theta.grad.clone()
        norm = float(torch.sqrt((gt**2).sum()))
        if norm == 0:
            return None
        for step in LINE_STEPS:
            t_try, g_try = theta - step * gt / norm, g
            dmin = float(distances(t_try, g_try).min())
            history.append(round(dmin, 4))
            if dmin >= s.target:
                return t_try.clone(), g_try.clone(), dmin
    return None


def _field(g: torch.Tensor, amplitude: float, size: int) -> torch.Tensor:
    """A smooth brightness field on the canvas: a GRID×GRID grid, bounded by tanh, bilinear."""
    return F.interpolate(torch.tanh(g) * amplitude, size=(size, size), mode="bilinear", align_corners=True)
