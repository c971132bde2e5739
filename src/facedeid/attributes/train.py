"""Train the shipped attribute classifier (book Ch. 4.4.1) on the shared CelebA and LFW labels.

    python -m facedeid.attributes.train --data ../shared/data --out src/facedeid/attributes/data

Data: every CelebA image of ``celeba/`` with its 13 labels (Ch. 4.5.2) and every LFW image of
``lfw/lfw_subset_gender.csv`` with its gender (``Male``; the other 12 are unknown and masked out of
the loss). Identities are split by a hash of their name into training (80 %) and held-out (20 %):
no person is on both sides. Model selection (linear or one hidden layer, weight decay) runs by
identity-grouped cross-validation on the training identities only; the chosen model is then fitted
on all training identities, evaluated once on the held-out identities, and written with its
provenance. Features (:mod:`facedeid.attributes.features`) are computed once, single process, and
cached under ``--cache`` (default ``out/cache``); CelebA training faces also get a mirrored copy.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..privacy.attributes import ATTRIBUTES
from . import features as F
from .classifier import evaluate, fit, select_model

HELDOUT_FRACTION = 0.2
DATASETS = ("celeba", "lfw", "orl_faces", "yalefaces", "deepface", "named_faces")


def is_heldout(identity: str) -> bool:
    """The fixed identity split: held out when sha256(identity) falls in the lowest 20 %."""
    h = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big")
    return h / 2.0**64 < HELDOUT_FRACTION


# --------------------------------------------------------------------------- labelled records
@dataclass(frozen=True)
class Record:
    """One identity-labelled image: path relative to the data root, identity, dataset and the 13
    labels (1 / 0, NaN where unknown)."""

    path: str
    identity: str
    dataset: str
    labels: np.ndarray


def records(root: Path, datasets: tuple[str, ...] = DATASETS) -> list[Record]:
    """Every image of identities.csv in ``datasets`` (present on disk), with the labels known for it."""
    celeba: dict[str, np.ndarray] = {}
    with open(root / "celeba" / "celeba_subset_labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            celeba["celeba/" + r["path"]] = np.array([1.0 if r[a] == "1" else 0.0 for a in ATTRIBUTES])
    male: dict[str, float] = {}
    with open(root / "lfw" / "lfw_subset_gender.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["gender"] in ("male", "female"):
                male["lfw/" + r["path"]] = 1.0 if r["gender"] == "male" else 0.0
    out = []
    with open(root / "identities.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["dataset"] not in datasets or not (root / r["path"]).is_file():
                continue
            labels = np.full(len(ATTRIBUTES), np.nan)
            if r["path"] in celeba:
                labels = celeba[r["path"]].copy()
            elif r["path"] in male:
                labels[ATTRIBUTES.index("Male")] = male[r["path"]]
            out.append(Record(r["path"], r["identity"], r["dataset"], labels))
    return out


# --------------------------------------------------------------------------- feature cache
def cache_file(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"attribute_features_v{F.FEATURE_VERSION}.npz"


def _load_cache(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:  # read every array once (NpzFile re-reads on each access)
        keys, ok, phi, tex = z["keys"], z["ok"], z["phi"].copy(), z["texture"].copy()
    if phi.shape[1:] != (F.PHI_DIM,) or tex.shape[1:] != (F.TEXTURE_DIM,):
        return {}
    return {str(k): {"ok": bool(o), "phi": p, "texture": t} for k, o, p, t in zip(keys, ok, phi, tex)}


def _save_cache(path: Path, table: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(table)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        keys=np.array(keys),
        ok=np.array([table[k]["ok"] for k in keys]),
        phi=np.stack([table[k]["phi"] for k in keys]).astype(np.float32) if keys else np.zeros((0, F.PHI_DIM), np.float32),
        texture=np.stack([table[k]["texture"] for k in keys]).astype(np.float32) if keys else np.zeros((0, F.TEXTURE_DIM), np.float32),
    )
    os.replace(tmp, path)


def feature_table(root: Path, recs: list[Record], cache_dir: Path, mirrored: set[str] = frozenset(), log=print) -> dict[str, dict]:
    """φ and texture features of every record (key = path) and of the mirrored copies of the paths
    in ``mirrored`` (key = path + ``#flip``), computed once and cached in ``cache_dir``."""
    from ..media.images import read_image

    path = cache_file(cache_dir)
    table = _load_cache(path)
    todo = [(r.path, False) for r in recs if r.path not in table] + [(p, True) for p in sorted(mirrored) if p + "#flip" not in table]
    t0, dirty = time.time(), 0
    for i, (rel, flip) in enumerate(todo):
        img = read_image(root / rel).rgb
        if flip:
            img = np.ascontiguousarray(img[:, ::-1])
        f = F.image_features(img)
        key = rel + ("#flip" if flip else "")
        table[key] = {"ok": f is not None, "phi": f.phi if f else np.zeros(F.PHI_DIM, np.float32),
                      "texture": f.texture if f else np.zeros(F.TEXTURE_DIM, np.float32)}
        dirty += 1
        if dirty >= 200 or i == len(todo) - 1:
            _save_cache(path, table)
            dirty = 0
            log(f"features: {i + 1}/{len(todo)} new faces ({time.time() - t0:.0f} s)")
    return table


@dataclass
class Table:
    """Arrays for a list of records: X (n, FEATURE_DIM), phi (n, 128), Y (n, 13) with NaN, and meta."""

    X: np.ndarray
    phi: np.ndarray
    Y: np.ndarray
    paths: list[str]
    identities: list[str]
    datasets: list[str]

    @property
    def heldout(self) -> np.ndarray:
        return np.array([is_heldout(i) for i in self.identities])


def to_table(recs: list[Record], table: dict[str, dict], suffix: str = "") -> Table:
    keep = [r for r in recs if table.get(r.path + suffix, {}).get("ok")]
    rows = [table[r.path + suffix] for r in keep]
    phi = np.stack([t["phi"] for t in rows]).astype(np.float32) if rows else np.zeros((0, F.PHI_DIM), np.float32)
    tex = np.stack([t["texture"] for t in rows]).astype(np.float32) if rows else np.zeros((0, F.TEXTURE_DIM), np.float32)
    return Table(
        X=np.concatenate([phi, tex], axis=1),
        phi=phi,
        Y=np.stack([r.labels for r in keep]) if keep else np.zeros((0, len(ATTRIBUTES))),
        paths=[r.path for r in keep],
        identities=[r.identity for r in keep],
        datasets=[r.dataset for r in keep],
    )


# --------------------------------------------------------------------------- training
def _format_table(res: dict, cv: dict | None = None) -> str:
    cv = cv or {}
    lines = ["| attribute | held-out accuracy | majority baseline | balanced accuracy | n (pos) | CV accuracy (training ids) |",
             "|---|---|---|---|---|---|"]
    for a in ATTRIBUTES:
        r = res[a]
        lines.append(f"| {a} | {r['accuracy']:.3f} | {r['baseline']:.3f} | {r['balanced_accuracy']:.3f} | {r['n']} ({r['positives']}) "
                     f"| {cv.get(a, float('nan')):.3f} |")
    mean = np.mean([res[a]["accuracy"] for a in ATTRIBUTES])
    lines.append(f"| **mean** | {mean:.3f} | {np.mean([res[a]['baseline'] for a in ATTRIBUTES]):.3f} | | | "
                 f"{np.mean(list(cv.values())) if cv else float('nan'):.3f} |")
    return "\n".join(lines)


def train(data_root: str | Path, out_dir: str | Path, cache_dir: str | Path = "out/cache", log=print) -> dict:
    """Compute features, select and fit the classifier, evaluate it on held-out identities and write
    ``attribute_classifier.npz`` + ``PROVENANCE.md`` into ``out_dir``. Returns the report dict."""
    root, out_dir, cache_dir = Path(data_root).resolve(), Path(out_dir), Path(cache_dir)
    t0 = time.time()
    recs = records(root, ("celeba", "lfw"))
    mirrored = {r.path for r in recs if r.dataset == "celeba" and not is_heldout(r.identity)}
    table = feature_table(root, recs, cache_dir, mirrored, log=log)
    data = to_table(recs, table)
    flips = to_table([r for r in recs if r.path in mirrored], table, "#flip")
    n_missing = len(recs) - len(data.paths)
    held = data.heldout
    tr = ~held
    Xtr = np.concatenate([data.X[tr], flips.X])
    Ytr = np.concatenate([data.Y[tr], flips.Y])
    gtr = np.array([*np.array(data.identities)[tr], *flips.identities])
    log(f"training faces {int(tr.sum())} (+{len(flips.paths)} mirrored), held-out faces {int(held.sum())}, no face found: {n_missing}")
    choice, cv = select_model(Xtr, Ytr, gtr, log=log)
    cv_best = next(r["cv_accuracy"] for r in cv if all(r[k] == v for k, v in choice.items()))
    clf = fit(Xtr, Ytr, **choice)
    res = evaluate(clf, data.X[held], data.Y[held])
    res_by_ds = {ds: evaluate(clf, data.X[held & (np.array(data.datasets) == ds)], data.Y[held & (np.array(data.datasets) == ds)])
                 for ds in ("celeba", "lfw")}
    n_id_tr = len(set(np.array(data.identities)[tr]))
    n_id_ho = len(set(np.array(data.identities)[held]))
    cel_ho = held & (np.array(data.datasets) == "celeba")
    n_cel_ho, n_cel_id_ho = int(cel_ho.sum()), len(set(np.array(data.identities)[cel_ho]))
    command = "python -m facedeid.attributes.train --data " + str(root) + " --out " + str(out_dir)
    clf.meta = {
        "attributes": list(ATTRIBUTES),
        "features": f"[phi: {F.PHI_NAME}, texture v{F.FEATURE_VERSION}: {F.TEXTURE_DIM} statistics]",
        "feature_version": F.FEATURE_VERSION,
        "model": choice,
        "trained": datetime.date.today().isoformat(),
        "train_faces": int(tr.sum()) + len(flips.paths),
        "train_identities": n_id_tr,
        "heldout_faces": int(held.sum()),
        "heldout_identities": n_id_ho,
        "heldout_rule": "sha256(identity)[:8] / 2^64 < 0.2",
        "heldout_accuracy": {a: round(res[a]["accuracy"], 4) for a in ATTRIBUTES},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    clf.save(out_dir / "attribute_classifier.npz")
    report = {"model": choice, "cv": cv, "heldout": res, "heldout_by_dataset": res_by_ds, "meta": clf.meta, "seconds": time.time() - t0}
    size = (out_dir / "attribute_classifier.npz").stat().st_size
    prov = f"""# attribute_classifier.npz — provenance

Attribute classifier of book Ch. 4.4.1 for the 13 attributes of Ch. 4.5.2, trained with the
multi-label soft-margin loss (Eq. 4.3; unknown labels masked out).

- Build command (from the repository root): `{command.replace(str(root), '../shared/data')}`
  (the shared data folder, i.e. `facedeid.bench.datasets.data_root()`).
- Date: {clf.meta['trained']}; Python {platform.python_version()}, numpy {np.__version__}; file size {size} bytes.
- Data: shared `celeba/celeba_subset_labels.csv` (CelebA aligned, 89×109, 13 labels) and
  `lfw/lfw_subset_gender.csv` (LFW deep-funneled, gender only → `Male`; the other 12 masked).
  Faces without a detection: {n_missing}.
- Split by identity, {clf.meta['heldout_rule']} → held out: {int(held.sum())} faces of {n_id_ho} identities;
  training: {int(tr.sum())} faces of {n_id_tr} identities, plus {len(flips.paths)} mirrored CelebA training faces.
- Features: {clf.meta['features']} ({F.FEATURE_DIM} dims; see `facedeid/attributes/features.py`),
  standardised with the training mean/std stored in the file.
- Model (chosen by identity-grouped 4-fold CV on the training identities, mean accuracy over the 13
  attributes): `{json.dumps(choice)}`. Group-wise decoding: at most one hair colour of G1, never
  Mustache together with No_Beard (G2).

## Accuracy on held-out identities (all held-out faces; LFW faces count for Male only)

{_format_table(res, cv_best)}

The last column is the identity-grouped 4-fold cross-validation accuracy of the chosen settings on
the training identities (more faces per attribute than the held-out split, but used for selection).
CelebA held-out only: mean accuracy {np.mean([res_by_ds['celeba'][a]['accuracy'] for a in ATTRIBUTES]):.3f};
LFW held-out Male accuracy {res_by_ds['lfw']['Male']['accuracy']:.3f} (n = {res_by_ds['lfw']['Male']['n']}).
The CelebA part is small (half-resolution crops; {n_cel_ho} held-out faces of {n_cel_id_ho} identities), so per-attribute
figures of rare attributes (Bald, Mustache, Eyeglasses, Pale_Skin) rest on a handful of positives.
"""
    (out_dir / "PROVENANCE.md").write_text(prov)
    (out_dir / "heldout_report.json").write_text(json.dumps(report, indent=1, default=float))
    log(_format_table(res, cv_best))
    log(f"wrote {out_dir / 'attribute_classifier.npz'} ({size} bytes) in {time.time() - t0:.0f} s")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="shared data folder (default: facedeid.bench.datasets.data_root())")
    parser.add_argument("--out", default=str(Path(__file__).parent / "data"), help="output folder for the classifier")
    parser.add_argument("--cache", default="out/cache", help="feature cache folder")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facedeid.attributes.train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    from ..bench.datasets import data_root

    train(args.data or data_root(), args.out, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
