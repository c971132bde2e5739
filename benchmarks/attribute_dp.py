"""Book Fig. 4.3 / 4.4 at the attribute level: DP k-anonymous attribute obfuscation (Algorithm 1).

Reference set D: every identity-labelled face of ../shared/data with features (CelebA, LFW, ORL,
Yale, deepface, named_faces). Its attributes are the labels where known (CelebA: all 13; LFW:
Male) and the shipped classifier's predictions elsewhere. φ = dlib 128-D descriptor (Euclidean).

Queries: the faces of the *held-out* CelebA and LFW identities of the classifier (never trained on);
their "predictions" are the classifier's output for them. For each query the query person's own
faces are removed from D, then Algorithm 1 runs with γ = 0.05, Δq = 1, τ = 10 (no clipping of valid
votes): Poisson subsample → k nearest neighbours → votes → exponential mechanism (Eq. 4.5 / 4.6).
Attribute accuracy (Eq. 4.14: share of the 13 attributes that agree) is reported between

* the k-anonymity average (plurality of the k neighbours' attributes) and the predictions,
* the DP obfuscation attributes and the predictions,
* the DP obfuscation attributes and the k-anonymity average,

for k ∈ {1, 10, 50, 100, 200} and ε ∈ [0, 0.3] (per-selection ε of Eq. 4.5 / 4.6). Each query is run
``--reps`` times; one run's subsample and neighbours are shared by all ε of the grid (common random
numbers: smoother curves, same expectation). When the subsample holds fewer than k faces all of it
is used; how often that happened and the subsample sizes are written out.

Outputs under ``--out`` (default out/bench/attributes): ``fig4_3.png`` (k-anonymity vs predictions
and DP vs predictions, over ε, one curve per k), ``fig4_4.png`` (DP vs k-anonymity over ε),
``accuracy_vs_k.png``, ``attribute_dp.csv`` (one row per k and ε), ``summary.json``, ``results.md``.
Features are cached in out/cache (computed single-process on first use).

    .venv/bin/python benchmarks/attribute_dp.py [--reps 4] [--step 0.001] [--seed N] [--out out/bench/attributes]
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from facedeid.attributes.classifier import load_default
from facedeid.attributes.features import PHI_NAME
from facedeid.attributes.train import feature_table, records, to_table
from facedeid.bench.datasets import data_root
from facedeid.privacy.attributes import (
    ATTRIBUTES,
    N_BLOCKS,
    AttributeDPParams,
    attribute_accuracy,
    majority_attributes,
    privacy_guarantee,
    select_attributes,
    tau_approximation,
    vote_matrix,
)
from facedeid.privacy.randomness import PrivacyRandom
from facedeid.privacy.sampling import poisson_mask

KS = (1, 10, 50, 100, 200)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench/attributes")
    ap.add_argument("--cache", default="out/cache")
    ap.add_argument("--reps", type=int, default=4, help="runs of Algorithm 1 per query face")
    ap.add_argument("--step", type=float, default=0.001, help="ε grid step on [0, 0.3]")
    ap.add_argument("--eps-max", type=float, default=0.3)
    ap.add_argument("--gamma", type=float, default=0.05)
    ap.add_argument("--tau", type=float, default=float(N_BLOCKS))
    ap.add_argument("--delta-q", type=float, default=1.0)
    ap.add_argument("--k", type=int, nargs="+", default=list(KS))
    ap.add_argument("--queries", type=int, default=0, help="use at most this many query faces (0 = all held-out)")
    ap.add_argument("--seed", type=int, default=None, help="research seed (reproducible, not private); default: os.urandom")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = PrivacyRandom(args.seed)
    t0 = time.time()

    # ------------------------------------------------------------------ reference set and queries
    root = data_root()
    recs = records(root)
    data = to_table(recs, feature_table(root, recs, Path(args.cache)))
    clf = load_default()
    pred = clf.predict(data.X).astype(np.int8)
    ref_attr = np.where(np.isnan(data.Y), pred, data.Y).astype(np.int8)
    votes = vote_matrix(ref_attr)
    votes_tau = tau_approximation(votes, args.tau)
    ids = np.array(data.identities)
    ds = np.array(data.datasets)
    n_ref = len(ids)
    composition = {d: int((ds == d).sum()) for d in dict.fromkeys(data.datasets)}
    queries = np.flatnonzero(data.heldout & np.isin(ds, ["celeba", "lfw"]))
    if args.queries and len(queries) > args.queries:
        queries = queries[np.linspace(0, len(queries) - 1, args.queries).round().astype(int)]
    print(f"reference set: {n_ref} faces {composition}; queries: {len(queries)} held-out faces; {rng.describe()}")

    ks = sorted(args.k)
    kmax = max(ks)
    eps_grid = np.round(np.arange(0.0, args.eps_max + args.step / 2, args.step), 6)
    rows = len(queries) * args.reps
    hist_tau = np.zeros((len(ks), rows, votes.shape[1]))
    maj = np.zeros((len(ks), rows, len(ATTRIBUTES)), dtype=np.int8)
    k_used = np.zeros((len(ks), rows), dtype=np.int64)
    sub_sizes = np.zeros(rows, dtype=np.int64)
    qpred = np.repeat(pred[queries], args.reps, axis=0)
    full_maj = np.zeros((len(ks), len(queries), len(ATTRIBUTES)), dtype=np.int8)

    # ------------------------------------------------------------------ Algorithm 1, steps 1–4
    r = 0
    for qi, q in enumerate(queries):
        pool = np.flatnonzero(ids != ids[q])  # the query person is not in the reference set
        d = np.linalg.norm(data.phi[pool] - data.phi[q], axis=1)
        order = pool[np.argsort(d, kind="stable")]  # pool sorted by distance to φ(x)
        for ki, k in enumerate(ks):  # non-private reference: k-NN in all of D (no subsampling)
            full_maj[ki, qi] = majority_attributes(votes[order[:k]].sum(axis=0), rng)
        for _ in range(args.reps):
            keep = poisson_mask(len(order), args.gamma, rng)  # Poisson subsample D' (order-independent coins)
            near = order[keep][:kmax]  # D' sorted by distance
            sub_sizes[r] = int(keep.sum())
            for ki, k in enumerate(ks):
                nb = near[:k]  # all of D' when |D'| < k
                k_used[ki, r] = len(nb)
                hist_tau[ki, r] = votes_tau[nb].sum(axis=0)  # Eq. 4.4
                maj[ki, r] = majority_attributes(votes[nb].sum(axis=0), rng)
            r += 1
    t_knn = time.time() - t0

    # ------------------------------------------------------------------ step 5 over the ε grid
    results = []
    for ki, k in enumerate(ks):
        acc_kp = attribute_accuracy(maj[ki], qpred)
        acc_full = attribute_accuracy(full_maj[ki], pred[queries])
        for eps in eps_grid:
            dp_attr = select_attributes(hist_tau[ki], float(eps), args.delta_q, rng)  # Eq. 4.5 / 4.6
            acc_dp = attribute_accuracy(dp_attr, qpred)
            acc_dk = attribute_accuracy(dp_attr, maj[ki])
            g = privacy_guarantee(AttributeDPParams(k=k, epsilon=float(eps), gamma=args.gamma, tau=args.tau, delta_q=args.delta_q))
            sem = lambda a: float(a.std(ddof=1) / np.sqrt(len(a)))  # noqa: E731
            results.append({
                "k": k, "epsilon": float(eps),
                "epsilon_total": g["epsilon_total"], "epsilon_total_amplified": g["epsilon_total_amplified"],
                "epsilon_selection_amplified": g["epsilon_selection_amplified"],
                "acc_kanon_pred": float(acc_kp.mean()), "acc_kanon_pred_sem": sem(acc_kp),
                "acc_dp_pred": float(acc_dp.mean()), "acc_dp_pred_sem": sem(acc_dp),
                "acc_dp_kanon": float(acc_dk.mean()), "acc_dp_kanon_sem": sem(acc_dk),
                "acc_kanon_full_pred": float(acc_full.mean()),
                "k_used_mean": float(k_used[ki].mean()), "subsample_below_k": float((sub_sizes < k).mean()),
            })
    with open(out / "attribute_dp.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(results[0]))
        w.writeheader()
        for row in results:
            w.writerow({key: (f"{v:.6g}" if isinstance(v, float) else v) for key, v in row.items()})

    summary = {
        "reference_set_faces": n_ref, "reference_composition": composition,
        "reference_attributes": "labels where known (CelebA 13, LFW Male), classifier predictions elsewhere",
        "phi": PHI_NAME, "queries": int(len(queries)), "reps": args.reps, "gamma": args.gamma, "tau": args.tau,
        "delta_q": args.delta_q, "eps_grid": [float(eps_grid[0]), float(eps_grid[-1]), args.step],
        "subsample_size": {"mean": float(sub_sizes.mean()), "min": int(sub_sizes.min()), "max": int(sub_sizes.max()),
                           "expected": args.gamma * (n_ref - 1)},
        "subsample_smaller_than_k": {str(k): float((sub_sizes < k).mean()) for k in ks},
        "k_used_mean": {str(k): float(k_used[ki].mean()) for ki, k in enumerate(ks)},
        "randomness": "os.urandom (secure)" if rng.secure else rng.describe(),
        "selection_sampler": "Gumbel-max on rng.uniform (batched exponential mechanism, Eq. 4.5/4.6)",
        "seconds": time.time() - t0, "seconds_knn": t_knn,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plots(results, ks, out)
    write_md(results, ks, summary, out)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}/ in {time.time() - t0:.0f} s")
    return 0


def _series(results, k, key):
    rows = [r for r in results if r["k"] == k]
    return np.array([r["epsilon"] for r in rows]), np.array([r[key] for r in rows]), np.array([r.get(key + "_sem", 0.0) for r in rows])


def plots(results, ks, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.cm.viridis(np.linspace(0, 0.9, len(ks)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for c, k in zip(colors, ks):
        e, y, _ = _series(results, k, "acc_kanon_pred")
        axes[0].plot(e, y, color=c, label=f"k = {k}")
        e, y, s = _series(results, k, "acc_dp_pred")
        axes[1].plot(e, y, color=c, label=f"k = {k}")
        axes[1].fill_between(e, y - s, y + s, color=c, alpha=0.2, lw=0)
        axes[1].axhline(_series(results, k, "acc_kanon_pred")[1][0], color=c, ls=":", lw=0.8)
    axes[0].set_title("k-anonymity average vs predictions")
    axes[1].set_title("DP obfuscation vs predictions (dotted: k-anonymity)")
    for ax in axes:
        ax.set_xlabel("ε (per selection, Eq. 4.5/4.6)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("attribute accuracy (Eq. 4.14)")
    axes[1].legend(loc="lower right")
    fig.suptitle("Fig. 4.3 (attribute level): γ = 0.05, Δq = 1")
    fig.tight_layout()
    fig.savefig(out / "fig4_3.png", dpi=130)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for c, k in zip(colors, ks):
        e, y, s = _series(results, k, "acc_dp_kanon")
        ax.plot(e, y, color=c, label=f"k = {k}")
        ax.fill_between(e, y - s, y + s, color=c, alpha=0.2, lw=0)
    ax.set_xlabel("ε (per selection, Eq. 4.5/4.6)")
    ax.set_ylabel("attribute accuracy (Eq. 4.14)")
    ax.set_title("Fig. 4.4 (attribute level): DP obfuscation vs k-anonymity")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "fig4_4.png", dpi=130)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    eps_show = (0.0, 0.01, 0.03, 0.1, 0.3)
    for c, eps in zip(plt.cm.plasma(np.linspace(0, 0.85, len(eps_show))), eps_show):
        for ax, key in zip(axes, ("acc_dp_pred", "acc_dp_kanon")):
            ys = [min((r for r in results if r["k"] == k), key=lambda r: abs(r["epsilon"] - eps))[key] for k in ks]
            ax.plot(ks, ys, "o-", color=c, label=f"ε = {eps}")
    axes[0].plot(ks, [_series(results, k, "acc_kanon_pred")[1][0] for k in ks], "k--", label="k-anonymity")
    axes[0].plot(ks, [_series(results, k, "acc_kanon_full_pred")[1][0] for k in ks], "k:", label="k-anonymity, no subsampling")
    axes[0].set_title("vs predictions")
    axes[1].set_title("DP vs k-anonymity")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("attribute accuracy (Eq. 4.14)")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_k.png", dpi=130)
    plt.close(fig)


def write_md(results, ks, summary, out: Path) -> None:
    pick = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3)
    lines = [
        "# Attribute-level Fig. 4.3 / 4.4 (Algorithm 1)", "",
        f"Reference set: {summary['reference_set_faces']} faces {summary['reference_composition']}; "
        f"attributes: {summary['reference_attributes']}. φ = {summary['phi']}.",
        f"Queries: {summary['queries']} faces of held-out identities × {summary['reps']} runs; γ = {summary['gamma']}, "
        f"τ = {summary['tau']}, Δq = {summary['delta_q']}; subsampling coins and selections from {summary['randomness']} "
        f"({summary['selection_sampler']}).",
        f"Poisson subsample size: mean {summary['subsample_size']['mean']:.1f} (min {summary['subsample_size']['min']}, "
        f"max {summary['subsample_size']['max']}); share of runs with fewer than k faces (then all of it is used): "
        + ", ".join(f"k={k}: {v:.0%}" for k, v in summary["subsample_smaller_than_k"].items())
        + "; mean k used: " + ", ".join(f"k={k}: {v:.1f}" for k, v in summary["k_used_mean"].items()) + ".", "",
        "| k | ε | ε_total | ε'_total (amplified) | k-anon vs pred | DP vs pred | DP vs k-anon |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in ks:
        for eps in pick:
            r = min((r for r in results if r["k"] == k), key=lambda r: abs(r["epsilon"] - eps))
            lines.append(f"| {k} | {r['epsilon']:.3f} | {r['epsilon_total']:.2f} | {r['epsilon_total_amplified']:.3f} | "
                         f"{r['acc_kanon_pred']:.3f} | {r['acc_dp_pred']:.3f} ± {r['acc_dp_pred_sem']:.3f} | "
                         f"{r['acc_dp_kanon']:.3f} ± {r['acc_dp_kanon_sem']:.3f} |")
    lines += ["", "ε is the per-selection budget of Eq. 4.5/4.6; ε_total = ε·min(10, 2τ)/Δq covers all 13 attributes "
              "w.r.t. the subsample; ε'_total = ln(1 + γ(e^ε_total − 1)) after Poisson subsampling. ± is one standard error."]
    (out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
