"""Ch. 4 image generation (``attr-dp-kanon``): renderability calibration, classifier agreement and
the Table 4.1-style rows for (k, ε) ∈ {(100, 0.05), (100, 0.10), (200, 0.05)}.

Stages (all by default; ``--stage`` picks some):

* ``reference`` — build (or load) the reference set of :mod:`facedeid.attributes.reference` from the
  shared data, reusing the attribute feature cache in ``--cache`` (out/cache, as
  benchmarks/attribute_dp.py). Cached under ~/.cache/facedeid/attr_reference, never in the repository.
* ``calibrate`` — which attributes the renderer can express. On ``--calib-faces`` fold-1 LFW faces
  that the Table protocol does not use, each attribute a is set to 1 and to 0 on the face's own code
  (z + g·B_a·(t − p_a), g = attr_gain, no k-anonymous move, no refinement, no suppression) and the
  classifier's P(a) is measured on both renders. An attribute is *renderable* when the renderer can
  express it at all (inner-face geometry or detail texture, not hair, accessories, expression or
  low-frequency colour: :data:`OUT_OF_REGION`, see the method doc) and the edit moves the classifier
  consistently: the swing P(a | set 1) − P(a | set 0) is ≥ 0.05 on average and positive on ≥ 80 % of
  the faces. The result is compared with ``RENDERABLE`` of the method.
* ``agree`` — classifier agreement: ``attr-dp-kanon`` (secure randomness) on ``--agree-faces``
  fold-1 faces of the Table protocol for each (k, ε) and for (100, 0.05) without refinement; per
  attribute, how often the classifier predicts the released target attribute T on the original and on
  the edited image, overall and on the faces where T differs from the original's prediction.
* ``table`` — ``facedeid bench --held-out --pairs 200 --identities 50`` for the three settings
  (equivalently: ``facedeid bench --held-out --method attr-dp-kanon:k=100,epsilon=0.05 --method
  attr-dp-kanon:k=100,epsilon=0.1 --method attr-dp-kanon:k=200,epsilon=0.05 --pairs 200
  --identities 50 --workers 2 --out out/bench/attr_dp_kanon/table41``).

Outputs in ``--out`` (default out/bench/attr_dp_kanon): ``calibration.json``, ``agreement.json``,
``table41/`` (the bench report), ``results.md`` (everything side by side; the book's Table 4.1
values are not available in this project, so only ours are printed).

    .venv/bin/python benchmarks/attr_dp_kanon.py [--stage reference calibrate agree table] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from facedeid.attributes import features as F
from facedeid.attributes.classifier import load_default
from facedeid.attributes.reference import attribute_model, cache_path, default_cache_dir, load_reference
from facedeid.bench.datasets import fold1_people, identities
from facedeid.bench.runner import build_protocol
from facedeid.media.images import read_image
from facedeid.methods import Context, get_method
from facedeid.methods.attr_dp_kanon import NOT_RENDERED, RENDERABLE
from facedeid.model.core import IdentityCode, load_model
from facedeid.privacy.attributes import ATTRIBUTES
from facedeid.privacy.randomness import PrivacyRandom

SETTINGS = ((100, 0.05), (100, 0.10), (200, 0.05))
PAIRS, IDENTITIES = 200, 50
#: Attributes the renderer cannot express whatever the classifier says (outside the inner face,
#: accessories, expression, low-frequency colour); see the method's documentation.
OUT_OF_REGION = ("Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Mouth_Slightly_Open", "Pale_Skin")


def spec(k: int, eps: float, extra: str = "") -> str:
    return f"attr-dp-kanon:k={k},epsilon={eps:g}" + (f",{extra}" if extra else "")


def _faces(paths, n):
    """(path, image, main face) for up to n of ``paths`` spread evenly, skipping faces not found."""
    paths = list(paths)
    if len(paths) > n:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]
    out = []
    for p in paths:
        img = read_image(p).rgb
        face = F.main_face(img)
        if face is not None:
            out.append((p, img, face))
    return out


# --------------------------------------------------------------------------- calibration
def calibrate(n_faces: int, log=print) -> dict:
    proto = build_protocol(PAIRS, IDENTITIES, held_out=True)
    used = {str(p) for p in proto.images()}
    fold1 = fold1_people()
    pool = sorted(str(p) for p, i in identities(dataset="lfw") if i in fold1 and str(p) not in used)
    faces = _faces(pool, n_faces)
    ref = load_reference()
    am = attribute_model(ref)
    model, clf = load_model(), load_default()
    gain = get_method("attr-dp-kanon").params.attr_gain
    n = len(faces)
    p0, pr0, p_set = np.zeros((n, 13)), np.zeros((n, 13), dtype=int), np.zeros((n, 13, 2))
    pred_set = np.zeros((n, 13, 2), dtype=int)
    t0 = time.time()
    for i, (_, img, face) in enumerate(faces):
        fit = model.encode(img, face)
        z = fit.code.vector()
        x = F.face_features(img, face).vector
        p0[i], pr0[i] = clf.probabilities(x)[0], clf.predict(x)[0]
        for a in range(13):
            for j, t in enumerate((0.0, 1.0)):
                zz = z + gain * (t - p0[i, a]) * am.effects[a]
                r = model.render(img, fit, IdentityCode.from_vector(zz, model.n_shape))
                xe = F.face_features(r.image, face).vector
                p_set[i, a, j] = clf.probabilities(xe)[0, a]
                pred_set[i, a, j] = clf.predict(xe)[0, a]
        if i % 10 == 9:
            log(f"calibration: {i + 1}/{n} faces ({time.time() - t0:.0f} s)")
    per = {}
    for a, name in enumerate(ATTRIBUTES):
        up = p_set[:, a, 1] - p0[:, a]
        down = p0[:, a] - p_set[:, a, 0]
        swing = p_set[:, a, 1] - p_set[:, a, 0]
        neg, pos = pr0[:, a] == 0, pr0[:, a] == 1
        measured = bool(swing.mean() >= 0.05 and (swing > 0).mean() >= 0.8)
        per[name] = {
            "expressible": name not in OUT_OF_REGION, "moves_classifier": measured,
            "renderable": bool(measured and name not in OUT_OF_REGION),
            "up_shift": float(up.mean()), "down_shift": float(down.mean()), "swing": float(swing.mean()),
            "swing_positive": float((swing > 0).mean()),
            "flip_to_1": float(pred_set[neg, a, 1].mean()) if neg.any() else None, "n_pred_0": int(neg.sum()),
            "flip_to_0": float(1 - pred_set[pos, a, 0].mean()) if pos.any() else None, "n_pred_1": int(pos.sum()),
            "reference_positives": float(am.positives[a]), "effect_norm": float(np.linalg.norm(am.effects[a])),
        }
    measured_set = tuple(a for a in ATTRIBUTES if per[a]["renderable"])
    res = {"faces": n, "attr_gain": gain, "per_attribute": per, "renderable_measured": list(measured_set),
           "renderable_method": list(RENDERABLE), "agrees_with_method": set(measured_set) == set(RENDERABLE),
           "attribute_model": {"faces": am.n, "r2": am.r2}, "seconds": time.time() - t0}
    if not res["agrees_with_method"]:
        log(f"WARNING: measured renderable set {measured_set} differs from the method's RENDERABLE {RENDERABLE}")
    return res


# --------------------------------------------------------------------------- agreement
def agreement(n_faces: int, log=print) -> dict:
    proto = build_protocol(PAIRS, IDENTITIES, held_out=True)
    faces = _faces(sorted({str(p.b) for p in proto.pairs}), n_faces)
    clf = load_default()
    rec = F._recognizer()
    specs = [spec(k, e) for k, e in SETTINGS] + [spec(100, 0.05, "refine=false")]
    orig = [(clf.predict(F.face_features(img, face).vector)[0], rec.embed(img, [face])[0]) for _, img, face in faces]
    out = {}
    for s in specs:
        m = get_method(*_split(s))
        T, P0, P1, dist, k_used, sub = [], [], [], [], [], []
        t0 = time.time()
        for (_, img, face), (pred0, e0) in zip(faces, orig):
            res = m.apply(img, [face], Context(rng=PrivacyRandom()))
            row = res.report["attr_dp_kanon"][0]
            T.append([int(row["attributes"][a]) for a in ATTRIBUTES])
            P0.append(pred0)
            P1.append(clf.predict(F.face_features(res.image, face).vector)[0])
            dist.append(float(np.linalg.norm(rec.embed(res.image, [face])[0] - e0)))
            k_used.append(row["k_used"])
            sub.append(row["subsample_size"])
        T, P0, P1 = np.array(T), np.array(P0), np.array(P1)
        per = {}
        for a, name in enumerate(ATTRIBUTES):
            diff = T[:, a] != P0[:, a]
            per[name] = {"rendered": name in RENDERABLE, "agree_original": float((P0[:, a] == T[:, a]).mean()),
                         "agree_edited": float((P1[:, a] == T[:, a]).mean()), "n_target_differs": int(diff.sum()),
                         "flip_success": float((P1[diff, a] == T[diff, a]).mean()) if diff.any() else None,
                         "kept_when_same": float((P1[~diff, a] == T[~diff, a]).mean()) if (~diff).any() else None}
        r_cols = [ATTRIBUTES.index(a) for a in RENDERABLE]
        n_cols = [ATTRIBUTES.index(a) for a in NOT_RENDERED]
        out[s] = {"faces": len(faces), "per_attribute": per,
                  "rendered_agree_original": float((P0[:, r_cols] == T[:, r_cols]).mean()),
                  "rendered_agree_edited": float((P1[:, r_cols] == T[:, r_cols]).mean()),
                  "not_rendered_agree_original": float((P0[:, n_cols] == T[:, n_cols]).mean()),
                  "not_rendered_agree_edited": float((P1[:, n_cols] == T[:, n_cols]).mean()),
                  "dlib_distance": float(np.mean(dist)), "k_used_mean": float(np.mean(k_used)),
                  "subsample_mean": float(np.mean(sub)), "seconds": time.time() - t0}
        log(f"agreement {s}: rendered {out[s]['rendered_agree_original']:.3f} → {out[s]['rendered_agree_edited']:.3f}, "
            f"not rendered {out[s]['not_rendered_agree_original']:.3f} → {out[s]['not_rendered_agree_edited']:.3f} "
            f"({time.time() - t0:.0f} s)")
    return out


def _split(s: str):
    from facedeid.methods.base import parse_spec

    return parse_spec(s)


# --------------------------------------------------------------------------- report
def write_md(out: Path, ref_meta: dict, calib: dict | None, agree: dict | None, rows: list | None) -> None:
    L = ["# attr-dp-kanon — Ch. 4 image generation (Table 4.1 layout)", ""]
    L += [f"Reference set: {ref_meta['faces']} faces {ref_meta['composition']}, {ref_meta['code_ok']} with a trusted identity code; "
          f"LFW fold-1 people excluded ({ref_meta['meta']['excluded_fold1_faces']} faces), named_faces excluded. "
          "Cached under ~/.cache/facedeid/attr_reference (biometric templates; not in the repository).", ""]
    if calib:
        L += ["## Renderability calibration", "",
              f"{calib['faces']} held-out fold-1 faces not in the Table protocol; each attribute set to 1 and to 0 on the face's own code "
              f"(attr_gain = {calib['attr_gain']}, no k-anonymous move, no refinement). Shifts are of the classifier's P(attribute).", "",
              "| attribute | expressible | P(set 1) − P(orig) | P(orig) − P(set 0) | swing | swing > 0 | flip 0→1 (n) | flip 1→0 (n) | renderable |",
              "|---|---|---|---|---|---|---|---|---|"]
        for a, r in calib["per_attribute"].items():
            f1 = "–" if r["flip_to_1"] is None else f"{r['flip_to_1']:.2f}"
            f0 = "–" if r["flip_to_0"] is None else f"{r['flip_to_0']:.2f}"
            L.append(f"| {a} | {'yes' if r['expressible'] else 'no'} | {r['up_shift']:+.3f} | {r['down_shift']:+.3f} | {r['swing']:+.3f} | "
                     f"{r['swing_positive']:.2f} | {f1} ({r['n_pred_0']}) | {f0} ({r['n_pred_1']}) | {'**yes**' if r['renderable'] else 'no'} |")
        L += ["", f"Measured renderable: {', '.join(calib['renderable_measured'])}; the method renders {', '.join(calib['renderable_method'])} "
              f"({'same' if calib['agrees_with_method'] else 'DIFFERENT — update RENDERABLE'}). Not rendered: "
              + "; ".join(f"{a} ({why})" for a, why in NOT_RENDERED.items()) + ".", ""]
    if agree:
        L += ["## Classifier agreement with the released target attributes T", "",
              "Share of (face, attribute) where the attribute classifier predicts T, on the original and on the edited image.", "",
              "| setting | dlib dist. | k used | rendered: orig → edited | not rendered: orig → edited |", "|---|---|---|---|---|"]
        for s, r in agree.items():
            L.append(f"| {s} | {r['dlib_distance']:.3f} | {r['k_used_mean']:.0f} (D' ≈ {r['subsample_mean']:.0f}) | "
                     f"{r['rendered_agree_original']:.3f} → **{r['rendered_agree_edited']:.3f}** | "
                     f"{r['not_rendered_agree_original']:.3f} → {r['not_rendered_agree_edited']:.3f} |")
        first = next(iter(agree))
        L += ["", f"Per attribute for {first} (flip success: share predicted T among faces where T ≠ the original's prediction):", "",
              "| attribute | rendered | agree orig. | agree edited | T ≠ orig. (n) | flip success | kept when T = orig. |", "|---|---|---|---|---|---|---|"]
        for a, r in agree[first]["per_attribute"].items():
            fs = "–" if r["flip_success"] is None else f"{r['flip_success']:.2f}"
            kp = "–" if r["kept_when_same"] is None else f"{r['kept_when_same']:.2f}"
            L.append(f"| {a} | {'yes' if r['rendered'] else 'no'} | {r['agree_original']:.2f} | {r['agree_edited']:.2f} | "
                     f"{r['n_target_differs']} | {fs} | {kp} |")
        L.append("")
    if rows:
        from facedeid.bench.report import markdown_table

        L += ["## Table 4.1 layout (LFW fold 1, held-out people)", "",
              f"`facedeid bench --held-out --pairs {PAIRS} --identities {IDENTITIES}` with "
              + ", ".join(f"`{spec(k, e)}`" for k, e in SETTINGS) + " (other parameters at their defaults: γ = 0.05, τ = 10, Δq = 1, "
              "strength = 1, attr_gain = 2, refine = true, suppress = 1). **The book's Table 4.1 values are not available in this "
              "project; only ours are printed.** Full report: table41/report.md.", ""]
        chance = next((r.get("chance") for r in rows if r.get("chance")), None)
        if chance:
            L += [f"Identification / adaptive attacker: {round(1 / chance)} fold-1 people with ≥ 5 photos (all there are; chance "
                  f"{chance:.3f}). With γ = 0.05 the Poisson subsample of the {ref_meta['faces']}-face reference set holds ≈ "
                  f"{0.05 * ref_meta['faces']:.0f} faces, so k = 200 uses all of it (k_used < k) and k = 100 nearly all of it.", ""]
        L += [markdown_table(rows), ""]
    (out / "results.md").write_text("\n".join(L))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench/attr_dp_kanon")
    ap.add_argument("--cache", default="out/cache", help="attribute feature cache (shared with benchmarks/attribute_dp.py)")
    ap.add_argument("--stage", nargs="+", default=["reference", "calibrate", "agree", "table"])
    ap.add_argument("--calib-faces", type=int, default=40)
    ap.add_argument("--agree-faces", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ref = load_reference(feature_cache=args.cache)
    ref_meta = {"faces": len(ref), "composition": ref.composition(), "code_ok": int(ref.code_ok.sum()), "meta": ref.meta,
                "path": str(cache_path(default_cache_dir()))}
    (out / "reference.json").write_text(json.dumps(ref_meta, indent=1))
    print(f"reference: {ref_meta['faces']} faces {ref_meta['composition']}, {ref_meta['code_ok']} trusted codes")

    def load(name):
        p = out / name
        return json.loads(p.read_text()) if p.is_file() else None

    calib = agree = rows = None
    if "calibrate" in args.stage:
        calib = calibrate(args.calib_faces)
        (out / "calibration.json").write_text(json.dumps(calib, indent=1))
    if "agree" in args.stage:
        agree = agreement(args.agree_faces)
        (out / "agreement.json").write_text(json.dumps(agree, indent=1))
    if "table" in args.stage:
        # a fresh process: the bench forks its workers, and forking after torch has run here (the
        # refinement in the agreement stage) deadlocks the workers' torch thread pools
        cmd = [sys.executable, "-m", "facedeid", "bench", "--held-out", *[x for k, e in SETTINGS for x in ("--method", spec(k, e))],
               "--pairs", str(PAIRS), "--identities", str(IDENTITIES), "--workers", str(args.workers), "--out", str(out / "table41")]
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
        rows = json.loads((out / "table41" / "results.json").read_text())["rows"]
        (out / "table41_rows.json").write_text(json.dumps(rows, indent=1, default=float))
    write_md(out, ref_meta, calib or load("calibration.json"), agree or load("agreement.json"), rows or load("table41_rows.json"))
    print((out / "results.md").read_text())
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
