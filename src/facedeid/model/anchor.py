"""Recognizer-anchored rendering: the password rotation of ``identity-password`` made recoverable.

Why. Rotating the *model's* identity code (Eq. 6.16–6.20) and rendering it changes a face too little
for a recognizer to call it someone else, and the recognizer-guided refinement that fixes that
(:mod:`facedeid.model.refine`) moves the face along directions that no key can undo: encoding the
output again does not give the rotated code back, so a rotation back with the right password
landed as far from the original as one with a wrong password (measured in session 2). The book's
networks avoid this because their identity representation *is* a recognizer's (ArcFace) and their
generator is trained to reproduce it. Here the same is done with the tools available:

* the identity representation that is rotated is the recognizer's descriptor, in the whitened
  coordinates w of :class:`facedeid.identity.space.RecognizerSpace` (k = 12 principal directions of
  real people's descriptors; the rest of the descriptor is kept);
* the renderer (the model's texture coordinates on the face canvas plus a smooth brightness field,
  rendered at full resolution through the same warp) is *optimised* so that what a recoverer will
  compute from the output — the descriptor e(y), its coordinates w(e(y)) and the rotation undone
  with the password — comes back to the original descriptor, while e(y) itself is at least
  ``distance`` away from it (:class:`RotationObjective`);
* recovery optimises the render of the recovered model code so that its descriptor equals the
  recovered descriptor (:class:`MatchObjective`).

The recoverer aligns with the five points it detects on the output, so after ``steps`` the output
is rendered, its five points are located again (dlib's predictor in the same box) and used as an
extra view for ``round_steps`` more steps, ``rounds`` times. Deterministic given the password, the
level and the photo. White-box against dlib only: MobileFaceNet stays the independent check.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..identity.torch_dlib import chips_to_tensor, face_chips, face_chips_torch, torch_threads
from .refine import CanvasWarp, _net, expression_keep_mask, moved_points5

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, list[float]]]


def descriptor(img: np.ndarray, points5: np.ndarray) -> np.ndarray:
    """dlib's descriptor of the face at ``points5`` (rounded, as dlib does) with the process's one
    cached network — what :class:`facedeid.identity.torch_dlib.TorchDlibRecognizer` computes,
    without loading the weights again."""
    with torch_threads(), torch.no_grad():
        chips = face_chips(img, [np.round(np.asarray(points5, dtype=np.float64))])
        return _net()(chips_to_tensor(chips))[0].numpy().astype(np.float64)


def recover_nearest_t(zy: torch.Tensor, z_r: torch.Tensor, theta: float) -> torch.Tensor:
    """Torch twin of :func:`facedeid.privacy.rotation.recover_nearest` (same candidate rule)."""
    n = zy.norm()
    u = zy / n
    w = z_r - (z_r @ u) * u
    w = w / w.norm()
    z_hat = z_r / z_r.norm()
    cands = [n * (math.cos(theta) * u + sign * math.sin(theta) * w) for sign in (-1.0, 1.0)]
    return min(cands, key=lambda c: float((c.detach() @ z_hat).abs() / c.detach().norm()))


@dataclass(frozen=True, eq=False)
class AnchorSettings:
    steps: int = 40
    rounds: int = 2
    round_steps: int = 20
    lr: float = 0.3
    max_colour: float = 12.0
    reg: float = 1e-3

    def objective(self, e0: np.ndarray) -> Objective:
        raise NotImplementedError

    def run(self, model, img: np.ndarray, fit, target68: np.ndarray, roi, base, alpha, cmap, delta_canvas):
        """The hook :meth:`facedeid.model.core.FaceModel.plan_edit` calls (as for RefineSettings)."""
        return anchored_texture(model, img, fit, target68, roi, base, alpha, cmap, delta_canvas, self)


@dataclass(frozen=True, eq=False)
class RotationObjective(AnchorSettings):
    """Anonymize: ‖e(recover_p(w(e(y)))) − e₀‖² + weight·max(0, distance − ‖e(y) − e₀‖)² over the views."""

    space: Any = None
    z_r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    theta: float = math.radians(95)
    distance: float = 0.75
    weight: float = 4.0

    def objective(self, e0: np.ndarray) -> Objective:
        sp = self.space
        mean, basis, std = (torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (sp.mean, sp.basis, sp.std))
        w0 = torch.from_numpy(sp.whiten(e0).astype(np.float32))
        e0_t = torch.from_numpy(np.asarray(e0, dtype=np.float32))
        z_r = torch.from_numpy(np.asarray(self.z_r, dtype=np.float32))

        def loss(emb: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
            total, info = torch.zeros(()), []
            for e in emb:
                w_rec = recover_nearest_t(((e - mean) @ basis) / std, z_r, self.theta)
                d = e - e0_t
                err = ((w_rec - w0) * std) @ basis.T + (d - (d @ basis) @ basis.T)
                dist = d.norm()
                total = total + (err**2).sum() + self.weight * torch.relu(self.distance - dist) ** 2
                info.append(round(float(err.detach().norm()), 4))
            return total, info

        return loss


@dataclass(frozen=True, eq=False)
class MatchObjective(AnchorSettings):
    """Recover: Σ_views ‖e(y) − target‖²."""

    target: np.ndarray = field(default_factory=lambda: np.zeros(128))

    def objective(self, e0: np.ndarray) -> Objective:
        t = torch.from_numpy(np.asarray(self.target, dtype=np.float32))[None]

        def loss(emb: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
            d = (emb - t).norm(dim=1)
            return (d**2).sum(), [round(float(x), 4) for x in d.detach()]

        return loss


def anchored_texture(model, img: np.ndarray, fit, target68: np.ndarray, roi, base: np.ndarray, alpha: np.ndarray,
                     cmap, delta_canvas: np.ndarray, s: AnchorSettings) -> tuple[np.ndarray, dict[str, Any]]:
    """Optimise the texture coordinates y (PCA, in units of their spread) and the brightness field g
    for ``s.objective`` (see module doc). Returns (extra canvas change, report)."""
    from ..faces.landmarks import landmarks5

    t0 = time.perf_counter()
    x0, y0, _, _ = roi
    net = _net()
    warp = CanvasWarp(model, cmap, base, alpha, delta_canvas)
    std = torch.from_numpy(model.texture.pca_std.astype(np.float32))
    full_t = torch.from_numpy(np.asarray(img, dtype=np.float32))
    keep_t = torch.from_numpy(expression_keep_mask(model.canvas))
    l5 = np.round(np.asarray(fit.face.landmarks5, dtype=np.float64))
    views = [l5, np.round(moved_points5(l5, fit.l68, target68))]
    objective = s.objective(descriptor(img, l5))
    y = torch.zeros(std.shape[0], requires_grad=True)
    g = torch.zeros((1, 1, 4, 4), requires_grad=True)
    opt = torch.optim.Adam([y, g], lr=s.lr)

    def extra(y_v: torch.Tensor, g_v: torch.Tensor) -> torch.Tensor:
        return warp.pca_change(y_v * std) * keep_t + warp.brightness(g_v, s.max_colour)

    def render(y_v: torch.Tensor, g_v: torch.Tensor) -> torch.Tensor:
        roi_img = warp.roi(extra(y_v, g_v))
        out = full_t.clone()
        out[y0:y0 + roi_img.shape[0], x0:x0 + roi_img.shape[1]] = roi_img
        return out

    history: list[list[float]] = []
    with torch_threads():
        for r in range(s.rounds + 1):
            if r > 0:  # the recoverer's alignment: five points located on the current output
                with torch.no_grad():
                    u8 = render(y, g).round().to(torch.uint8).numpy()
                views.append(np.round(landmarks5(u8, fit.face.box)))
            for _ in range(s.steps if r == 0 else s.round_steps):
                loss, info = objective(net(face_chips_torch(render(y, g), views)))
                history.append(info)
                opt.zero_grad()
                (loss + s.reg * (y**2).mean()).backward()
                opt.step()
    with torch.no_grad():
        change = extra(y, g)[0].permute(1, 2, 0).numpy()
    report = {"steps": len(history), "objective_first": history[0], "objective_last": history[-1],
              "seconds": round(time.perf_counter() - t0, 3)}
    return change, report
