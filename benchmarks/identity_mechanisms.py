"""Figures of the identity privacy mechanisms (issue 7) on held-out LFW people (fold-1 second images).

* Fig. 5.4/5.5 trend — ``identity-dp`` over ε ∈ {0.01 … 800}: dlib and MobileFaceNet identity distance,
  PSNR, SSIM; 100 samples of one face at ε = 6 show the diversity; the proven Δf = 2·B·dim next to the
  book's empirical Δf (max L1 distance between clipped codes of the test faces).
* Fig. 7.4 trend — ``identity-gauss`` over scale ∈ {0.05 … 0.40}.
* Tables 6.3/6.4 layout — ``identity-password`` at d ∈ {0, 5, 9}: identity distance original ↔
  anonymized, original ↔ recovered with the right password, original ↔ "recovered" with a wrong one;
  recovered-image PSNR/SSIM/MAE for rotation recovery and for exact recovery (encrypted payload, PNG).

    .venv/bin/python benchmarks/identity_mechanisms.py [--faces 40] [--out out/bench/identity_mechanisms]

Noise uses a research seed per face (reproducible; the methods' default is the secure source).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=40)
    ap.add_argument("--out", default="out/bench/identity_mechanisms")
    ap.add_argument("--only-password", action="store_true",
                    help="re-measure only the identity-password rows; the other sections are kept from OUT/report.json")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from facedeid.bench.datasets import lfw_pairs
    from facedeid.evaluation import default_recognizers
    from facedeid.faces.detect import detect
    from facedeid.faces.landmarks import with_landmarks68
    from facedeid.media.images import read_image
    from facedeid.methods import Context, get_method
    from facedeid.metrics.quality import mae, psnr, ssim
    from facedeid.model.core import load_model
    from facedeid.privacy.identity_mechanisms import clip_code, empirical_sensitivity, identity_sensitivity
    from facedeid.privacy.randomness import PrivacyRandom
    from facedeid.recovery import changed_patches, recover_image
    from facedeid.media.payload import apply_patches, pack_patches, seal, unpack_patches, unseal

    recs = default_recognizers()
    model = load_model()
    pairs = lfw_pairs()
    step = max(1, 600 // args.faces)
    items = []
    for p in pairs[::step][: args.faces]:
        img = read_image(p.b).rgb
        faces = detect(img, "centerface")
        if not faces:
            continue
        h, w = img.shape[:2]
        f = with_landmarks68(img, min(faces, key=lambda f: np.hypot(f.box.center[0] - w / 2, f.box.center[1] - h / 2)))
        items.append((img, f, [r.embed(img, [f])[0] for r in recs]))
    print(f"{len(items)} held-out faces")

    def dist(rec_i: int, e0: np.ndarray, img: np.ndarray, f) -> float:
        r = recs[rec_i]
        e = r.embed(img, [f])[0]
        if r.metric == "cosine":
            return float(1 - e @ e0 / (np.linalg.norm(e) * np.linalg.norm(e0)))
        return float(np.linalg.norm(e - e0))

    def row(spec: str, seed_base: int) -> dict:
        name, _, rest = spec.partition(":")
        params = dict(kv.split("=") for kv in rest.split(",") if kv)
        m = get_method(name, params)
        vals = {"dlib": [], "mobilefacenet": [], "psnr": [], "ssim": [], "sec": []}
        for i, (img, f, e0) in enumerate(items):
            t = time.perf_counter()
            a = m.apply(img, [f], Context(rng=PrivacyRandom(seed=seed_base + i))).image
            vals["sec"].append(time.perf_counter() - t)
            vals["dlib"].append(dist(0, e0[0], a, f))
            vals["mobilefacenet"].append(dist(1, e0[1], a, f))
            vals["psnr"].append(psnr(img, a))
            vals["ssim"].append(ssim(img, a))
        res = {k: float(np.mean(v)) for k, v in vals.items()}
        res["sdr_dlib"] = float(np.mean(np.array(vals["dlib"]) > recs[0].threshold))
        res["sdr_mobilefacenet"] = float(np.mean(np.array(vals["mobilefacenet"]) > recs[1].threshold))
        return res

    t0 = time.time()
    if args.only_password:
        report = json.loads((out / "report.json").read_text())
        report["faces_password"] = len(items)
        return _password_section(report, items, recs, dist, out, t0)
    report: dict = {"faces": len(items), "faces_password": len(items)}
    report["identity_dp"] = {eps: row(f"identity-dp:epsilon={eps}", 1000) for eps in (0.01, 0.57, 6, 50, 200, 800, 3000)}
    print("identity-dp sweep", round(time.time() - t0), "s", flush=True)
    report["identity_gauss"] = {s: row(f"identity-gauss:scale={s}", 2000) for s in (0.05, 0.1, 0.2, 0.25, 0.3, 0.4)}
    print("identity-gauss sweep", round(time.time() - t0), "s", flush=True)

    # diversity: 100 samples of one face at ε = 6
    img, f, e0 = items[0]
    m = get_method("identity-dp", {"epsilon": "6"})
    embs = [recs[0].embed(m.apply(img, [f], Context(rng=PrivacyRandom(seed=5000 + s))).image, [f])[0] for s in range(100)]
    embs = np.asarray(embs)
    pd = np.linalg.norm(embs[:, None] - embs[None], axis=2)[np.triu_indices(100, 1)]
    report["diversity_eps6_100_samples"] = {"mean_pairwise_dlib": float(pd.mean()), "fraction_pairs_over_tau": float((pd > 0.6).mean())}

    codes = np.array([clip_code(model.encode(img, f).code.vector(), 3.0) for img, f, _ in items])
    report["sensitivity"] = {"proven_l1": identity_sensitivity(3.0, model.dim), "empirical_l1": float(empirical_sensitivity(codes)),
                             "dim": model.dim, "bound": 3.0}

    _password_section(report, items, recs, dist, out, t0)


def _password_section(report: dict, items: list, recs: list, dist, out: Path, t0: float) -> None:
    """identity-password at d ∈ {0, 5, 9}: distances after anonymization, right- and wrong-password
    recovery; rotation and exact recovery quality (Tables 6.3 / 6.4 layout)."""
    from facedeid.media.payload import apply_patches, pack_patches, seal, unpack_patches, unseal
    from facedeid.methods import Context, get_method
    from facedeid.metrics.quality import mae, psnr, ssim
    from facedeid.recovery import changed_patches, recover_image

    pw, wrong = "benchmark password", "a wrong guess"
    rec_rows = {}
    for d in (0, 5, 9):
        acc = {k: [] for k in ("anon_dlib", "right_dlib", "wrong_dlib", "anon_mfn", "right_mfn", "wrong_mfn",
                               "rot_psnr", "rot_ssim", "rot_mae", "exact_psnr", "exact_mae", "sec_recover", "sec_anonymize",
                               "psnr", "ssim")}
        m = get_method("identity-password", {"password": pw, "level": str(d)})
        for img, f, e0 in items:
            t = time.perf_counter()
            a = m.apply(img, [f], Context()).image
            acc["sec_anonymize"].append(time.perf_counter() - t)
            t = time.perf_counter()
            right, _ = recover_image(a, pw, d)
            acc["sec_recover"].append(time.perf_counter() - t)
            bad, _ = recover_image(a, wrong, d)
            for tag, x in (("anon", a), ("right", right), ("wrong", bad)):
                acc[f"{tag}_dlib"].append(dist(0, e0[0], x, f))
                acc[f"{tag}_mfn"].append(dist(1, e0[1], x, f))
            acc["psnr"].append(psnr(img, a))
            acc["ssim"].append(ssim(img, a))
            acc["rot_psnr"].append(psnr(img, right))
            acc["rot_ssim"].append(ssim(img, right))
            acc["rot_mae"].append(mae(img, right))
            blob = seal(pack_patches(changed_patches(img, a)), pw)
            exact = apply_patches(a, unpack_patches(unseal(blob, pw)))
            acc["exact_psnr"].append(psnr(img, exact) if not np.array_equal(img, exact) else float("inf"))
            acc["exact_mae"].append(mae(img, exact))
        res = {k: float(np.mean(v)) for k, v in acc.items()}
        res["right_below_tau_dlib"] = float(np.mean(np.array(acc["right_dlib"]) < recs[0].threshold))
        res["sdr_dlib"] = float(np.mean(np.array(acc["anon_dlib"]) > recs[0].threshold))
        res["sdr_mfn"] = float(np.mean(np.array(acc["anon_mfn"]) > recs[1].threshold))
        res["right_below_tau_mfn"] = float(np.mean(np.array(acc["right_mfn"]) < recs[1].threshold))
        res["wrong_above_tau_dlib"] = float(np.mean(np.array(acc["wrong_dlib"]) > recs[0].threshold))
        rec_rows[d] = res
        print(f"password d={d}", round(time.time() - t0), "s", flush=True)
    report["identity_password"] = rec_rows
    report["seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    _plots(report, out)
    _markdown(report, out)
    print((out / "report.md").read_text())


def _plots(rep: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    eps = sorted(rep["identity_dp"], key=float)
    x = [float(e) for e in eps]
    ax[0].semilogx(x, [rep["identity_dp"][e]["dlib"] for e in eps], "o-", label="dlib distance")
    ax[0].semilogx(x, [rep["identity_dp"][e]["mobilefacenet"] for e in eps], "s-", label="MobileFaceNet 1−cos")
    ax[0].axhline(0.6, ls=":", c="grey")
    ax[0].set_xlabel("ε")
    ax[0].set_title("identity-dp: identity distance (Fig. 5.4 trend)")
    ax[0].legend()
    ax[1].semilogx(x, [rep["identity_dp"][e]["psnr"] for e in eps], "o-", label="PSNR (dB)")
    ax2 = ax[1].twinx()
    ax2.semilogx(x, [rep["identity_dp"][e]["ssim"] for e in eps], "s-", c="C1", label="SSIM")
    ax[1].set_xlabel("ε")
    ax[1].set_title("identity-dp: quality (Fig. 5.5 trend)")
    fig.tight_layout()
    fig.savefig(out / "identity_dp_epsilon.png", dpi=110)
    fig, ax = plt.subplots(figsize=(5, 4))
    sc = sorted(rep["identity_gauss"], key=float)
    ax.plot([float(s) for s in sc], [rep["identity_gauss"][s]["dlib"] for s in sc], "o-", label="dlib distance")
    ax.plot([float(s) for s in sc], [rep["identity_gauss"][s]["mobilefacenet"] for s in sc], "s-", label="MobileFaceNet 1−cos")
    ax.set_xlabel("noise scale")
    ax.set_title("identity-gauss (Fig. 7.4 trend)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "identity_gauss_scale.png", dpi=110)


def _markdown(rep: dict, out: Path) -> None:
    L = [f"# Identity privacy mechanisms — {rep['faces']} held-out LFW faces, {rep['seconds']} s", ""]
    L += ["## identity-dp (Fig. 5.4/5.5)", "", "| ε | dlib dist | SDR dlib | MFN 1−cos | SDR MFN | PSNR | SSIM | s/face |", "|---|---|---|---|---|---|---|---|"]
    for e, r in sorted(rep["identity_dp"].items(), key=lambda kv: float(kv[0])):
        L.append(f"| {e} | {r['dlib']:.3f} | {r['sdr_dlib']:.2f} | {r['mobilefacenet']:.3f} | {r['sdr_mobilefacenet']:.2f} | {r['psnr']:.1f} | {r['ssim']:.3f} | {r['sec']:.2f} |")
    s = rep["sensitivity"]
    L += ["", f"Δf proven = 2·B·dim = {s['proven_l1']:.0f} (B = {s['bound']}, dim = {s['dim']}); book-style empirical Δf (max L1 over these faces) = {s['empirical_l1']:.1f}.",
          f"100 samples of one face at ε = 6: mean pairwise dlib distance {rep['diversity_eps6_100_samples']['mean_pairwise_dlib']:.3f}, "
          f"{rep['diversity_eps6_100_samples']['fraction_pairs_over_tau']:.2f} of pairs beyond τ.", "", "![](identity_dp_epsilon.png)", ""]
    L += ["## identity-gauss (Fig. 7.4)", "", "| scale | dlib dist | SDR dlib | MFN 1−cos | SDR MFN | PSNR | SSIM |", "|---|---|---|---|---|---|---|"]
    for sc, r in sorted(rep["identity_gauss"].items(), key=lambda kv: float(kv[0])):
        L.append(f"| {sc} | {r['dlib']:.3f} | {r['sdr_dlib']:.2f} | {r['mobilefacenet']:.3f} | {r['sdr_mobilefacenet']:.2f} | {r['psnr']:.1f} | {r['ssim']:.3f} |")
    L += ["", "![](identity_gauss_scale.png)", "", "## identity-password recovery (Tables 6.3 / 6.4 layout)", "",
          f"{rep.get('faces_password', rep['faces'])} faces; identity distance to the original (dlib Euclidean, MFN 1−cos), SDR = share of anonymized faces beyond τ.", "",
          "| d | dlib: anonymized | SDR | right pw | right < τ | wrong pw | wrong > τ | MFN: anonymized | SDR | right | right < τ | wrong | anonymized PSNR / SSIM | rotation recovery PSNR / SSIM / MAE | exact recovery PSNR / MAE | s anonymize / recover |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d, r in rep["identity_password"].items():
        L.append(f"| {d} | {r['anon_dlib']:.3f} | {r.get('sdr_dlib', float('nan')):.2f} | {r['right_dlib']:.3f} | {r['right_below_tau_dlib']:.2f} | {r['wrong_dlib']:.3f} | {r.get('wrong_above_tau_dlib', float('nan')):.2f} | "
                 f"{r['anon_mfn']:.3f} | {r.get('sdr_mfn', float('nan')):.2f} | {r['right_mfn']:.3f} | {r.get('right_below_tau_mfn', float('nan')):.2f} | {r['wrong_mfn']:.3f} | "
                 f"{r.get('psnr', float('nan')):.1f} / {r.get('ssim', float('nan')):.3f} | {r['rot_psnr']:.1f} / {r['rot_ssim']:.3f} / {r['rot_mae']:.2f} | {r['exact_psnr']} / {r['exact_mae']:.2f} | "
                 f"{r.get('sec_anonymize', float('nan')):.1f} / {r['sec_recover']:.1f} |")
    (out / "report.md").write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
