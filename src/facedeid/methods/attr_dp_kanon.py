"""``attr-dp-kanon``: the image-generation step of book Ch. 4 — render a face whose attributes are the
differentially private k-anonymous attributes of Algorithm 1, through the parametric face model.

Per face x (all randomness from ``ctx.rng``; secure by default):

1. φ(x) (dlib 128-D) → **Algorithm 1** (:func:`facedeid.privacy.attributes.obfuscate_attributes`,
   Eq. 4.4–4.6) on the reference set D (:mod:`facedeid.attributes.reference`): Poisson subsample D'
   (γ), the k nearest neighbours N of φ(x) in D', τ-clipped votes, exponential mechanism per
   attribute / conflict group → 13 target attributes t.
2. **k-anonymous move** (Ch. 4.1, k-Same style): the identity code z moves the fraction ``strength``
   of the way to μ_N, the mean code of the neighbours N that have a trusted code (1 = replaced by
   the average of several dozen real people — about 40 % of the reference faces have a trusted code;
   no single person's code is used). If no neighbour has one, the
   mean of all trusted reference codes is used (reported as ``kanon_fallback``).
3. **Attribute edit**: z ≈ c + B a (ridge regression of the code on the 13 attributes over the
   reference faces, :func:`facedeid.attributes.reference.attribute_model`); the attribute state of
   the moved code is s = strength · ā_N + (1 − strength) · p(x) (ā_N: the neighbours' mean attributes,
   p(x): the classifier's probabilities for x), and for every **renderable** attribute a the code
   takes the step ``attr_gain`` · B_a · (t_a − s_a). ``attr_gain`` > 1 compensates for what the
   renderer loses (shape fraction, PCA clamps, detail-layer-only texture): on 24 held-out faces the
   swing of the classifier's P(Male) between "set to 1" and "set to 0" was 0.16 at gain 1 and 0.48 at
   gain 2 (Young 0.14 / 0.31, No_Beard 0.14 / 0.30), with faces still natural at 2 — the default.
4. Plausibility (``model.plausible``: codes outside the model's χ² region are pulled back) and
   rendering (``model.render``; pose, expression, lighting, hair and background stay the photo's).

Renderable attributes (:data:`RENDERABLE`): the renderer changes the inner face only — landmark
geometry of the identity subspace and the high-frequency detail layer of the texture — so an
attribute is rendered when it lives there *and* the calibration (``benchmarks/attr_dp_kanon.py``,
40 held-out fold-1 faces, gain 2) measured that the edit moves the attribute classifier consistently
(mean swing of P(a) between "set to 1" and "set to 0" ≥ 0.05, positive on ≥ 80 % of the faces):
Male (swing 0.37), No_Beard (beard / stubble shading, 0.28), Young (0.25), Bushy_Eyebrows (0.10). Not rendered (:data:`NOT_RENDERED`, listed in every per-face report with the target
value Algorithm 1 chose, never faked):

* Bald, Bangs, Black_Hair, Blond_Hair, Brown_Hair — hair and forehead lie outside the renderer's
  inner-face blend mask (the classifier's P(Black_Hair) does swing by 0.15 with the code, through φ
  and the brows: a side channel, not hair, so it is not used);
* Eyeglasses — the model has no accessory layer: real glasses cannot be removed, and the detail layer
  can only imprint translucent frame ghosts (which do swing P(Eyeglasses) by 0.16 — not used). Side
  effect to know: with the default ``suppress = 1`` the photo's own thin frames are largely washed
  out as idiosyncratic detail, whatever the target;
* Mouth_Slightly_Open — expression, which the renderer keeps from the photo by design;
* Pale_Skin — the low-frequency skin colour and shading stay the photo's;
* Mustache — measured: the edit moves the classifier too little (swing 0.035 < 0.05; hardly any
  reference face with a trusted code has a mustache).

Privacy. The released *attribute vector* is ε-DP w.r.t. the reference set (ε_total and the amplified
ε' are in the report, :func:`facedeid.privacy.attributes.privacy_guarantee`). The rendered *identity*
is k-anonymous, not DP: μ_N is the noiseless mean of the neighbours' codes. The photo's non-identity
content is kept. The report never contains the original face's attributes. The reference set holds
biometric templates of real people and is cached under ``~/.cache/facedeid/attr_reference``, never
shipped. Fold-1 LFW people are not in it, so ``facedeid bench --held-out`` evaluates unseen people.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..faces.types import Face
from ..privacy.attributes import ATTRIBUTES, AttributeDPParams, AttributeDPResult, obfuscate_attributes
from .base import Context, MethodOutput, register
from .parametric import IdentityCodeMethod, IdentityRenderParams

RENDERABLE: tuple[str, ...] = ("Bushy_Eyebrows", "Male", "No_Beard", "Young")
NOT_RENDERED: dict[str, str] = {
    "Bald": "hair / scalp outside the rendered inner face",
    "Bangs": "forehead hair outside the rendered inner face",
    "Black_Hair": "hair colour outside the rendered inner face",
    "Blond_Hair": "hair colour outside the rendered inner face",
    "Brown_Hair": "hair colour outside the rendered inner face",
    "Eyeglasses": "no accessory layer: glasses cannot be removed, only translucent frame ghosts added",
    "Mouth_Slightly_Open": "expression is kept from the photo",
    "Pale_Skin": "low-frequency skin colour is kept from the photo",
    "Mustache": "edit too weak on the classifier (calibration swing 0.035 < 0.05)",
}
assert set(RENDERABLE) | set(NOT_RENDERED) == set(ATTRIBUTES) and not set(RENDERABLE) & set(NOT_RENDERED)


@functools.lru_cache(maxsize=1)
def _resources():
    """(reference set, attribute model, soft attribute values of the reference) — loaded once."""
    from ..attributes.reference import attribute_model, load_reference

    ref = load_reference()
    return ref, attribute_model(ref), np.where(ref.labelled, ref.attributes, ref.probabilities).astype(np.float64)


def edit_code(z: np.ndarray, target: np.ndarray, state: np.ndarray, effects: np.ndarray, gain: float,
              attributes: Sequence[str] = RENDERABLE) -> np.ndarray:
    """z + gain · Σ_{a ∈ attributes} B_a (t_a − s_a): the attribute edit of step 3 (``effects`` = B, (13, dim))."""
    cols = [ATTRIBUTES.index(a) for a in attributes]
    diff = np.asarray(target, dtype=np.float64)[cols] - np.asarray(state, dtype=np.float64)[cols]
    return np.asarray(z, dtype=np.float64) + gain * diff @ effects[cols]


@register
class AttrDPKAnon(IdentityCodeMethod):
    name: ClassVar[str] = "attr-dp-kanon"
    reference: ClassVar[str] = "Ch. 4, Algorithm 1, Eq. 4.4–4.6; Ch. 4.1 k-anonymous move"
    summary: ClassVar[str] = ("DP k-anonymous attributes (Algorithm 1) rendered through the face model: code moved to the "
                              "neighbours' mean, then edited along learned attribute directions")

    @dataclass(frozen=True)
    class Params(IdentityRenderParams):
        k: int = 100
        epsilon: float = 0.05
        gamma: float = 0.05
        tau: float = 10.0
        delta_q: float = 1.0
        strength: float = 1.0
        attr_gain: float = 2.0
        suppress: float = 1.0

        def dp_params(self) -> AttributeDPParams:
            return AttributeDPParams(k=self.k, epsilon=self.epsilon, gamma=self.gamma, tau=self.tau, delta_q=self.delta_q)

        def validate(self) -> None:
            self.dp_params()  # raises ValueError for bad k, ε, γ, τ, Δq
            if not 0 <= self.strength <= 1:
                raise ValueError("strength (fraction of the way to the neighbours' mean code) must be in [0, 1]")
            if not 0 <= self.attr_gain <= 4:
                raise ValueError("attr_gain must be in [0, 4]")
            self.validate_render()

    # ------------------------------------------------------------------ steps
    def select_targets(self, phi: np.ndarray, ctx: Context) -> AttributeDPResult:
        """Step 1: Algorithm 1 for φ(x) on the reference set (tests may replace this)."""
        ref, _, _ = _resources()
        return obfuscate_attributes(phi, ref.phi, ref.attributes, self.params.dp_params(), ctx.rng)

    def target_code(self, z: np.ndarray, p_x: np.ndarray, result: AttributeDPResult) -> tuple[np.ndarray, dict[str, Any]]:
        """Steps 2–3: the k-anonymous move and the attribute edit of code ``z`` (``p_x``: classifier
        probabilities of the original face)."""
        ref, amodel, soft = _resources()
        p = self.params
        nb = np.asarray(result.neighbours, dtype=np.int64)
        nb = nb[ref.code_ok[nb]]
        fallback = len(nb) == 0
        pool = np.flatnonzero(ref.code_ok) if fallback else nb
        mu = ref.codes[pool].astype(np.float64).mean(axis=0)
        a_bar = soft[pool].mean(axis=0)
        base = z + p.strength * (mu - z)
        state = p.strength * a_bar + (1.0 - p.strength) * np.asarray(p_x, dtype=np.float64)
        new = edit_code(base, result.attributes, state, amodel.effects, p.attr_gain)
        return new, {"neighbour_codes": int(len(nb)), "kanon_fallback": fallback}

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        from ..attributes import features as F
        from ..attributes.classifier import load_default
        from ..model.core import IdentityCode, load_model

        model = load_model()
        clf = load_default()
        out = image.copy()
        rows = []
        for face in faces:
            if face.landmarks68 is None:
                from ..faces.landmarks import with_landmarks68

                face = with_landmarks68(image, face)
            feats = F.face_features(image, face)  # φ and the classifier input of the original face
            result = self.select_targets(feats.phi, ctx)
            p_x = clf.probabilities(feats.vector)[0]
            fit = model.encode(out, face)
            z_new, info = self.target_code(fit.code.vector(), p_x, result)
            rendered = model.render(out, fit, IdentityCode.from_vector(z_new, model.n_shape), self.params.refine_settings(),
                                    self.params.suppress)
            out = rendered.image
            released = result.as_dict()
            rows.append({
                "attributes": released,
                "rendered": list(RENDERABLE),
                "not_rendered": {a: released[a] for a in ATTRIBUTES if a in NOT_RENDERED},
                "k_requested": result.k_requested, "k_used": result.k_used, "subsample_size": result.subsample_size,
                "subsample_smaller_than_k": result.subsample_smaller_than_k,
                "privacy": result.guarantee, "randomness": result.randomness,
                **info, **rendered.report,
            })
        return MethodOutput(out, {"attr_dp_kanon": rows})
