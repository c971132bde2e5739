"""``identity-mask`` (book Ch. 8.4, Algorithms 2 and 3): key-controlled identity rotation.

For a single image it does what :func:`facedeid.video_mask.mask_video` does to a video's first
frame: each face is aligned to the standard 5-point pattern (Umeyama, Eq. 8.13–8.14) and encoded
into the parametric model's identity code z_id. The key gives z_r = f(Ukey) (Eq. 8.4). z_id is
rotated by θ towards z_r (Eq. 8.5–8.6, θ = 60°), then rendered with the face's own pose,
expression and background (Eq. 8.19–8.20), refined against the dlib recognizer. Videos go through
:func:`facedeid.video_mask.mask_video`, which processes each face once and carries the edit to
the later frames by motion. Use ``facedeid recover`` to recover a video.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import BadArguments
from ..faces.types import Face
from .base import Context, Method, MethodOutput, register
from .parametric import IdentityRenderParams


@register
class IdentityMask(Method):
    name: ClassVar[str] = "identity-mask"
    reference: ClassVar[str] = "Ch. 8.4, Alg. 2–3, Eq. 8.4–8.6, 8.13–8.14, 8.19–8.20"
    summary: ClassVar[str] = ("rotate the identity code by θ towards the key's reference identity (reversible with the key); "
                              "on video: first frame only, carried to later frames by motion")
    kind: ClassVar[str] = "pseudonymization"
    needs_68: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Params(IdentityRenderParams):
        key: str = ""
        theta: float = 60.0
        payload: str = "edit"
        embed: bool = False

        def validate(self) -> None:
            if self.payload not in ("edit", "exact", "none"):
                raise ValueError("payload must be edit, exact or none")
            if self.embed and self.payload == "none":
                raise ValueError("embed=true needs a payload (edit or exact)")
            if not self.key:
                raise ValueError("a key (Ukey) is required: key=…")
            if not 0 < self.theta < 180:
                raise ValueError("theta must lie strictly between 0 and 180 degrees")
            self.validate_render()

    def spec(self) -> str:
        """Like :meth:`Method.spec` but never with the key (specs end up in reports)."""
        vals = {**dataclasses.asdict(self.params), "key": "<hidden>"}
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in vals.items())

    def anonymize_video_file(self, src, dst, detector: str, detect_every: int, quality: int, report_path) -> dict[str, Any]:
        """Alg. 2 on a whole video: each face's first-frame edit carried by motion (not per frame)."""
        from ..video_mask import mask_video

        p = self.params
        settings = p.refine_settings()  # None when refine=false or steps=0
        return mask_video(src, dst, p.key, theta_deg=p.theta, refine=settings is not None, detector=detector,
                          detect_every=detect_every, quality=quality, payload=p.payload, report_path=report_path,
                          embed=p.embed, refine_settings=settings, suppress=p.suppress)

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        from ..faces.landmarks import with_landmarks68
        from ..model.core import load_model
        from ..video_mask import motion_fit, plan_identity_edit, reference_for, theta_radians

        p = self.params
        if not p.key:
            raise BadArguments("identity-mask needs a key (Ukey): key=…")
        model = load_model()
        z_r = reference_for(p.key, model.dim)
        theta = theta_radians(p.theta)
        out = np.asarray(image).copy()
        rows: list[dict[str, Any]] = []
        for face in faces:
            face = with_landmarks68(image, face)
            try:
                edit, info = plan_identity_edit(model, image, face, z_r, theta, p.refine_settings(), suppress=p.suppress)
                rendered = model.apply_edit(out, motion_fit(face.landmarks68, image.shape, face), edit)
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                rows.append({"face": face.box.to_list(), "failed": str(exc)[:120]})
                continue
            out = rendered.image
            rows.append({"face": face.box.to_list(), **info, "shape_fraction": rendered.report.get("shape_fraction")})
        return MethodOutput(out, {"identity": rows})
