"""Identity change through the parametric face model (book Ch. 7.3, IDEudemon's "divide and conquer").

``identity-warp`` encodes each face into the model's identity code, moves the code by ``strength``
(in units of the typical distance between two people) towards a *synthetic* identity drawn from the
model's identity distribution (``target=synthetic``) or towards the mean of the k model people
nearest to the face (``target=kanon``, k-Same-M style: no single real person), and renders it:
identity-subspace landmark displacement with the face's own pose and expression, the texture's
detail layer moved by the code change with the photo's lighting kept and (``suppress``) the face's
idiosyncratic detail that the model cannot explain removed, feathered inner-face blend,
then (``refine=true``) a few recognizer-guided steps on texture coefficients and a colour field
(:mod:`facedeid.model.refine`). Irreversible: nothing of the original code is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..faces.types import Face
from .base import Context, Method, MethodOutput, Params, register

TARGETS = ("synthetic", "kanon")


@dataclass(frozen=True)
class IdentityRenderParams(Params):
    """Rendering settings shared by every identity-code method: recognizer-guided refinement
    (``refine``, ``steps``, ``target_distance``) and ``suppress``, the fraction of the face's
    idiosyncratic detail (what the texture model cannot explain) that is removed."""

    refine: bool = True
    steps: int = 12
    target_distance: float = 0.72
    suppress: float = 0.0

    def refine_settings(self):
        from ..model.refine import RefineSettings

        return RefineSettings(steps=self.steps, target=self.target_distance) if self.refine and self.steps > 0 else None

    def validate_render(self) -> None:
        if self.steps < 0 or self.steps > 200:
            raise ValueError("steps must be in 0…200")
        if not 0 < self.target_distance < 2:
            raise ValueError("target_distance must be in (0, 2)")
        if not 0 <= self.suppress <= 1:
            raise ValueError("suppress must be in [0, 1]")


class IdentityCodeMethod(Method):
    """A method that maps each face's identity code to a new one and renders it (Ch. 5–8)."""

    needs_68: ClassVar[bool] = True

    def new_code(self, model, fit, ctx: Context) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def render_settings(self, model, fit, ctx: Context) -> Any:
        """How the new code is rendered: the recognizer-guided refinement of the params (or None);
        :class:`facedeid.methods.identity_privacy.IdentityPassword` anchors it instead."""
        return self.params.refine_settings()

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        from ..model.core import load_model

        model = load_model()
        out = image.copy()
        rows = []
        for face in faces:
            fit = model.encode(out, face)
            code, info = self.new_code(model, fit, ctx)
            rendered = model.render(out, fit, code, self.render_settings(model, fit, ctx), self.params.suppress)
            out = rendered.image
            rows.append({**info, **rendered.report})
        return MethodOutput(out, {"identity": rows})


@register
class IdentityWarp(IdentityCodeMethod):
    name: ClassVar[str] = "identity-warp"
    reference: ClassVar[str] = "Ch. 7.3 (parametric identity model, divide and conquer); Ch. 3.2.2 (k-Same-M)"
    summary: ClassVar[str] = "move the face's identity code towards a synthetic (or k-anonymous) identity and re-render it"

    @dataclass(frozen=True)
    class Params(IdentityRenderParams):
        strength: float = 1.0
        target: str = "synthetic"
        k: int = 5
        suppress: float = 1.0

        def validate(self) -> None:
            if not 0 < self.strength <= 3:
                raise ValueError("strength must be in (0, 3]")
            if self.target not in TARGETS:
                raise ValueError(f"target must be one of {', '.join(TARGETS)}")
            if self.k < 1:
                raise ValueError("k must be at least 1")
            self.validate_render()

    def new_code(self, model, fit, ctx: Context):
        p = self.params
        goal = model.sample(ctx.rng) if p.target == "synthetic" else model.k_anonymous_target(fit.code, p.k)
        return model.move(fit.code, goal, p.strength), {"target": p.target}
