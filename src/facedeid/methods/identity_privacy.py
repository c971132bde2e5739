"""The book's identity privacy mechanisms (Ch. 5, 6, 7) on the parametric model's identity code.

Each method encodes every face into the model's identity code z (whitened shape + texture identity
coordinates, :mod:`facedeid.model.core`), changes z by a mechanism from :mod:`facedeid.privacy`,
applies the model's plausibility check and renders the new code; pose, expression, lighting, hair
and background stay the photo's.

* ``identity-dp`` — ε-IdentityDP (Ch. 5.3.6, Def. 5.5, Eq. 5.10–5.12): z clipped to [−B, B] per
  coordinate (proven L1 sensitivity Δf = 2·B·dim), Laplace noise Lap(Δf/ε) through OpenDP's
  secure sampler, rendered. **Guarantee:** the released identity code is ε-LDP; the rendering is
  post-processing of that code *and of the photo's non-identity attributes*, which are not
  protected (they come from the photo). With ``refine=true`` the renderer also looks at the original
  face's recognizer embedding, so the ε statement no longer covers the image; the default is off.
* ``identity-password`` — personalised, invertible (Ch. 6.3, Eq. 6.9, 6.16–6.21): the password p
  gives z_r = f(p) by scrypt (a synthetic direction, no real person, Ch. 8.1), the privacy level
  d ∈ 0…9 gives θ = g(d) (Ch. 6.4.1), z_new = ‖z‖(z̄ cos θ + ẑ₉₀ sin θ). Pseudonymization (GDPR
  Art. 4(5)): ``facedeid recover`` inverts it with the right password; a wrong password gives yet
  another identity. With ``anchor=true`` (default) the same rotation with an independent z_r is
  also applied to the face's recognizer descriptor (whitened, :mod:`facedeid.identity.space`), and
  the render is optimised so that the descriptor measured on the output, rotated back with the
  password, is the original's while the output itself is ``distance`` away
  (:mod:`facedeid.model.anchor`); without it the rotated model code alone neither de-identifies
  (SDR 0.02–0.18) nor survives re-encoding. ``exact=true`` also embeds the original face pixels, AES-256-GCM-encrypted under
  the password, for exact recovery (:mod:`facedeid.recovery`).
* ``identity-gauss`` — IDEudemon's protective perturbation (Ch. 7.3.2, Eq. 7.3): z scaled into
  [−1, 1] (±3 between-identity standard deviations), Gaussian noise of the given scale, truncated
  to ±1, scaled back, rendered.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import BadArguments
from ..privacy.identity_mechanisms import from_unit_box, identity_dp, identity_gauss, to_unit_box
from ..privacy.keys import reference_direction
from ..privacy.rotation import rotate, theta_for_level
from .base import Context, register
from .parametric import IdentityCodeMethod, IdentityRenderParams

PASSWORD_ENV = "FACEDEID_PASSWORD"
SPACE_PURPOSE = "identity-rotation-recognizer"
UNIT_BOX = 3.0  # identity-gauss: ±3 between-identity standard deviations map to ±1
ROTATION_PURPOSE = "identity-rotation"


def password_or_env(password: str) -> str:
    """The password parameter, or ``$FACEDEID_PASSWORD`` when it is empty (keeps it off the command line)."""
    pw = password or os.environ.get(PASSWORD_ENV, "")
    if not pw:
        raise BadArguments(f"a password is required: password=… or ${PASSWORD_ENV}")
    return pw


def anchored_rotation(password: str, level: int, distance: float = 0.75):
    """The anchored-render settings for a password and level: z_r = f(p) in the recognizer space's
    k dimensions (scrypt, purpose ``identity-rotation-recognizer``), θ = g(d)."""
    from ..identity.space import load_space
    from ..model.anchor import RotationObjective

    space = load_space()
    return RotationObjective(space=space, z_r=reference_direction(password, space.k, SPACE_PURPOSE),
                             theta=theta_for_level(level), distance=distance)


@register
class IdentityDP(IdentityCodeMethod):
    name: ClassVar[str] = "identity-dp"
    reference: ClassVar[str] = "Ch. 5.3.6, Def. 5.5, Eq. 5.10–5.12 (ε-IdentityDP, Laplace mechanism)"
    summary: ClassVar[str] = "Laplace noise on the clipped identity code (ε-LDP release of the code), then render"

    @dataclass(frozen=True)
    class Params(IdentityRenderParams):
        epsilon: float = 6.0
        bound: float = 3.0
        refine: bool = False

        def validate(self) -> None:
            if self.epsilon <= 0 or self.bound <= 0:
                raise ValueError("epsilon and bound must be positive")
            self.validate_render()

    def new_code(self, model, fit, ctx: Context):
        from ..model.core import IdentityCode

        z_noisy, rep = identity_dp(fit.code.vector(), self.params.epsilon, self.params.bound, ctx.rng)
        rep = {k: v for k, v in rep.items() if k != "randomness"}
        return IdentityCode.from_vector(z_noisy, model.n_shape), {"identity_dp": rep}


@register
class IdentityPassword(IdentityCodeMethod):
    name: ClassVar[str] = "identity-password"
    reference: ClassVar[str] = "Ch. 6.3–6.4, Eq. 6.9, 6.16–6.21 (password-driven identity rotation, privacy level d)"
    summary: ClassVar[str] = "rotate the identity code by θ(d) towards a password-derived direction; recoverable with the password"
    kind: ClassVar[str] = "pseudonymization"

    @dataclass(frozen=True)
    class Params(IdentityRenderParams):
        password: str = ""
        level: int = 5
        exact: bool = False
        refine: bool = False
        anchor: bool = True
        distance: float = 0.75

        def validate(self) -> None:
            theta_for_level(self.level)  # raises for levels outside 0…9
            if not 0 < self.distance < 2:
                raise ValueError("distance must be in (0, 2)")
            self.validate_render()

    def render_settings(self, model, fit, ctx: Context):
        """``anchor=true`` (default): the rotation is carried by the recognizer's identity space and
        the render is optimised so that the password undoes it (:mod:`facedeid.model.anchor`)."""
        if not self.params.anchor:
            return super().render_settings(model, fit, ctx)
        return anchored_rotation(password_or_env(self.params.password), self.params.level, self.params.distance)

    def new_code(self, model, fit, ctx: Context):
        from ..model.core import IdentityCode

        z = fit.code.vector()
        z_r = reference_direction(password_or_env(self.params.password), z.size, ROTATION_PURPOSE)
        theta = theta_for_level(self.params.level)
        z_new = rotate(z, z_r, theta)
        return IdentityCode.from_vector(z_new, model.n_shape), {"level": self.params.level, "theta_deg": round(float(np.degrees(theta)), 1)}


@register
class IdentityGauss(IdentityCodeMethod):
    name: ClassVar[str] = "identity-gauss"
    reference: ClassVar[str] = "Ch. 7.3.2, Eq. 7.3; Ch. 7.4.2 (IDEudemon protective perturbation)"
    summary: ClassVar[str] = "Gaussian noise on the identity code scaled into [−1, 1], truncated, then render"

    @dataclass(frozen=True)
    class Params(IdentityRenderParams):
        scale: float = 0.25
        refine: bool = False

        def validate(self) -> None:
            if not 0.05 <= self.scale <= 0.40:
                raise ValueError("scale must be in 0.05…0.40 (the book recommends 0.2–0.3)")
            self.validate_render()

    def new_code(self, model, fit, ctx: Context):
        from ..model.core import IdentityCode

        z_unit = to_unit_box(np.clip(fit.code.vector(), -UNIT_BOX, UNIT_BOX), UNIT_BOX)
        z_new = from_unit_box(identity_gauss(z_unit, self.params.scale, ctx.rng), UNIT_BOX)
        return IdentityCode.from_vector(z_new, model.n_shape), {"scale": self.params.scale}


def recovery_password(method: Any) -> str | None:
    """The password to seal an exact-recovery payload with, when the method asks for one."""
    p = getattr(method, "params", None)
    if isinstance(method, IdentityPassword) and p is not None and p.exact:
        return password_or_env(p.password)
    return None
