"""The reference set D of the image-generation method of Ch. 4 (``attr-dp-kanon``) and its attribute
directions in the parametric model's identity-code space.

Per reference face the set holds

* φ — dlib's 128-D descriptor (the neighbour-search feature of Algorithm 1),
* the 13 attributes of Ch. 4.5.2 — the label where one is known (CelebA: all 13, LFW: ``Male``), the
  shipped classifier's prediction elsewhere (``labelled`` says which), and the classifier's
  probabilities,
* the identity code of :class:`facedeid.model.core.FaceModel` (16 shape + 32 texture whitened
  coordinates) and ``code_ok``: whether that code is trustworthy — a colour face with eyes ≥ 24 px
  apart and |yaw| ≤ 35°, the rule the face model's texture part was built with (the half-resolution
  CelebA crops, ORL and Yale fail it; their φ and attributes still vote in Algorithm 1).

Who is in it: every identity-labelled face of the shared data (``identities.csv``) whose face is
found, **except** the LFW people of View-2 fold 1 (:func:`facedeid.bench.datasets.fold1_people`, the
evaluation people), ``named_faces`` (the same celebrities as LFW under other labels) and the
``deepface`` faces whose φ lies within :data:`LEAK_DISTANCE` of a fold-1 face (deepface's celebrities
are unnamed and some are LFW people). Evaluation on fold 1 is therefore on people the reference set
does not hold.

**Privacy of the file.** φ and identity codes are biometric templates of real people. The set is
built from the shared data on first use and cached under ``~/.cache/facedeid/attr_reference``
(``$FACEDEID_ATTR_REFERENCE`` overrides); it is never shipped with the package or written into the
repository.

Attribute directions (:func:`attribute_model`): a multivariate ridge regression of the code on the 13
attributes over the ``code_ok`` faces, z ≈ c + B a. Column B_a is the *partial* effect of attribute a
with the others held fixed (a mean-difference direction would mix e.g. Mustache with Male), so
"change attribute a from s to t" is the code step B_a (t − s).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailable
from ..privacy.attributes import ATTRIBUTES

REFERENCE_VERSION = 1
#: deepface faces closer than this (dlib Euclidean) to a fold-1 face are treated as that person.
LEAK_DISTANCE = 0.45
#: code_ok rule (the face model's texture rule, :mod:`facedeid.model.build`).
MIN_EYE_DISTANCE = 24.0
MAX_YAW = 35.0
EXCLUDED_DATASETS = ("named_faces",)
#: Ridge penalty of the attribute regression (in units of faces; whitened codes, 0/1 attributes).
RIDGE = 10.0


def default_cache_dir() -> Path:
    """``$FACEDEID_ATTR_REFERENCE`` when set, else ``~/.cache/facedeid/attr_reference``."""
    env = os.environ.get("FACEDEID_ATTR_REFERENCE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facedeid" / "attr_reference"


@dataclass
class Reference:
    """The reference set (row i = one face); see the module doc."""

    phi: np.ndarray  # (n, 128) float32
    attributes: np.ndarray  # (n, 13) int8 0/1
    labelled: np.ndarray  # (n, 13) bool: label (True) or classifier prediction (False)
    probabilities: np.ndarray  # (n, 13) classifier probabilities
    codes: np.ndarray  # (n, 48) identity codes
    code_ok: np.ndarray  # (n,) bool
    identities: np.ndarray  # (n,) str
    datasets: np.ndarray  # (n,) str
    paths: np.ndarray  # (n,) str, relative to the data root
    meta: dict

    def __len__(self) -> int:
        return len(self.phi)

    def composition(self) -> dict[str, int]:
        return {d: int((self.datasets == d).sum()) for d in dict.fromkeys(self.datasets.tolist())}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, phi=self.phi, attributes=self.attributes, labelled=self.labelled, probabilities=self.probabilities,
                            codes=self.codes, code_ok=self.code_ok, identities=self.identities, datasets=self.datasets,
                            paths=self.paths, meta=np.array(json.dumps(self.meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Reference":
        with np.load(path, allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
        return cls(**{k: v for k, v in arr.items() if k != "meta"}, meta=json.loads(str(arr["meta"])))


# --------------------------------------------------------------------------- fingerprints
def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def fingerprint(root: Path) -> dict[str, str]:
    """What the cached set depends on: the data lists, the face model and the classifier."""
    from ..model.core import MODEL_PATH
    from .classifier import DEFAULT_PATH

    return {"version": str(REFERENCE_VERSION), "identities": _sha(root / "identities.csv"), "fold1": _sha(root / "lfw" / "pairs_fold1.txt"),
            "model": _sha(MODEL_PATH), "classifier": _sha(DEFAULT_PATH)}


def cache_path(cache: Path) -> Path:
    return Path(cache) / f"reference_v{REFERENCE_VERSION}.npz"


# --------------------------------------------------------------------------- building
def _code_quality(fit, image: np.ndarray) -> tuple[bool, dict]:
    l68 = fit.l68
    eyes = float(np.linalg.norm(l68[36:42].mean(axis=0) - l68[42:48].mean(axis=0)))
    yaw = float(np.degrees(np.arcsin(np.clip(-fit.pose.rotation[0, 2], -1, 1))))
    c = image.astype(np.int16)
    grey = bool(np.abs(c[..., 0] - c[..., 1]).max() < 3 and np.abs(c[..., 1] - c[..., 2]).max() < 3)
    return (not grey) and eyes >= MIN_EYE_DISTANCE and abs(yaw) <= MAX_YAW, {"eyes": eyes, "yaw": yaw, "grey": grey}


def build_reference(data_root: str | Path | None = None, cache: str | Path | None = None, feature_cache: str | Path | None = None,
                    limit: int | None = None, log=print) -> Reference:
    """Build the reference set from the shared data at ``data_root`` and write it to ``cache``.

    φ and the classifier's texture features come from the attribute feature cache of
    :func:`facedeid.attributes.train.feature_table` in ``feature_cache`` (default: ``cache``; the
    benchmarks pass ``out/cache``, where they already are); faces missing there are computed. The
    face's 68 landmarks (same face choice, :func:`facedeid.attributes.features.main_face`) give the
    identity code. ``limit`` keeps every n-th face so that at most ``limit`` remain (quick tests;
    such a set is returned but not written).
    """
    from ..bench.datasets import data_root as default_root
    from ..bench.datasets import fold1_people
    from ..media.images import read_image
    from ..model.core import load_model
    from . import features as F
    from .classifier import load_default
    from .train import feature_table, records, to_table

    try:
        root = Path(data_root) if data_root is not None else default_root()
    except FileNotFoundError as exc:
        raise ModelUnavailable(f"attr-dp-kanon needs the shared data to build its reference set: {exc}") from None
    if not (root / "identities.csv").is_file():
        raise ModelUnavailable(f"attr-dp-kanon: no identities.csv under {root}; set FACEDEID_DATA to the shared data folder")
    cache = Path(cache) if cache is not None else default_cache_dir()
    fcache = Path(feature_cache) if feature_cache is not None else cache
    t0 = time.time()
    held = fold1_people(root)
    recs = records(root)
    data = to_table(recs, feature_table(root, recs, fcache, log=log))
    ids, ds = np.array(data.identities), np.array(data.datasets)
    is_fold1 = (ds == "lfw") & np.isin(ids, sorted(held))
    keep = ~is_fold1 & ~np.isin(ds, EXCLUDED_DATASETS)
    leaked = np.zeros(len(ids), dtype=bool)
    if is_fold1.any():
        for i in np.flatnonzero(keep & (ds == "deepface")):
            leaked[i] = np.linalg.norm(data.phi[is_fold1] - data.phi[i], axis=1).min() < LEAK_DISTANCE
    keep &= ~leaked
    rows = np.flatnonzero(keep)
    if limit is not None and len(rows) > limit:
        rows = rows[np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    clf = load_default()
    prob = clf.probabilities(data.X[rows])
    pred = clf.predict(data.X[rows]).astype(np.int8)
    Y = data.Y[rows]
    attrs = np.where(np.isnan(Y), pred, Y).astype(np.int8)
    model = load_model()
    codes = np.zeros((len(rows), model.dim))
    ok = np.zeros(len(rows), dtype=bool)
    found = np.ones(len(rows), dtype=bool)
    for n, i in enumerate(rows):
        img = read_image(root / data.paths[i]).rgb
        face = F.main_face(img)
        if face is None:  # the feature pass found it; detection is deterministic, so this is rare
            found[n] = False
            continue
        fit = model.encode(img, face)
        codes[n] = fit.code.vector()
        ok[n] = _code_quality(fit, img)[0]
        if n % 250 == 0:
            log(f"reference codes: {n}/{len(rows)} ({time.time() - t0:.0f} s)")
    sel = found
    ref = Reference(
        phi=data.phi[rows][sel].astype(np.float32), attributes=attrs[sel], labelled=~np.isnan(Y[sel]),
        probabilities=prob[sel].astype(np.float32), codes=codes[sel].astype(np.float32), code_ok=ok[sel],
        identities=ids[rows][sel], datasets=ds[rows][sel], paths=np.array(data.paths)[rows][sel],
        meta={"fingerprint": fingerprint(root), "data_root": str(root), "built": time.strftime("%Y-%m-%d %H:%M"),
              "excluded_fold1_faces": int(is_fold1.sum()), "excluded_fold1_people": len(held),
              "excluded_datasets": list(EXCLUDED_DATASETS), "excluded_deepface_leaks": int(leaked.sum()),
              "limit": limit, "seconds": round(time.time() - t0, 1)},
    )
    if limit is None:
        ref.save(cache_path(cache))
    log(f"reference set: {len(ref)} faces {ref.composition()}, {int(ref.code_ok.sum())} with a trusted code ({time.time() - t0:.0f} s)")
    return ref


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=4)
def load_reference(cache: str | None = None, feature_cache: str | None = None) -> Reference:
    """The cached reference set; built on first use (several minutes: every reference face is
    detected and encoded, φ computed where not cached). Rebuilt when the data lists, the face model
    or the classifier change. Raises :class:`ModelUnavailable` without the shared data."""
    from ..bench.datasets import data_root

    cdir = Path(cache) if cache else default_cache_dir()
    path = cache_path(cdir)
    try:
        root = data_root()
    except FileNotFoundError:
        root = None
    if path.is_file():
        ref = Reference.load(path)
        if root is None or ref.meta.get("fingerprint") == fingerprint(root):
            return ref
        _log_stderr(f"attr-dp-kanon: {path} is out of date; rebuilding")
    if root is None:
        raise ModelUnavailable("attr-dp-kanon needs its reference set: the shared data folder was not found "
                               "(set FACEDEID_DATA to the folder holding MANIFEST.md) and no cached set exists at " + str(path))
    _log_stderr(f"attr-dp-kanon: building the reference set from {root} into {cdir} (once; several minutes)")
    return build_reference(root, cdir, feature_cache, log=_log_stderr)


# --------------------------------------------------------------------------- attribute directions
@dataclass(frozen=True)
class AttributeModel:
    """z ≈ intercept + B a over the faces with a trusted code: ``effects`` (13, dim) are the rows
    B_aᵀ (the code change of switching attribute a from 0 to 1, others fixed); ``positives`` the
    number of faces with a = 1; ``r2`` the share of code variance the attributes explain."""

    intercept: np.ndarray
    effects: np.ndarray
    positives: np.ndarray
    n: int
    r2: float

    def norms(self) -> dict[str, float]:
        return {a: float(np.linalg.norm(e)) for a, e in zip(ATTRIBUTES, self.effects)}


def attribute_model(ref: Reference, ridge: float = RIDGE, soft: bool = True) -> AttributeModel:
    """Ridge regression of the identity code on the 13 attributes (see the module doc). With
    ``soft`` the classifier's probability stands in for an unknown label (rare attributes such as
    Mustache are predicted for a handful of LFW faces only, but their probabilities still carry signal)."""
    m = ref.code_ok
    A = (np.where(ref.labelled, ref.attributes, ref.probabilities) if soft else ref.attributes)[m].astype(np.float64)
    Z = ref.codes[m].astype(np.float64)
    am, zm = A.mean(axis=0), Z.mean(axis=0)
    Ac, Zc = A - am, Z - zm
    B = np.linalg.solve(Ac.T @ Ac + ridge * np.eye(A.shape[1]), Ac.T @ Zc)  # (13, dim)
    resid = Zc - Ac @ B
    r2 = 1.0 - float((resid**2).sum() / max((Zc**2).sum(), 1e-12))
    return AttributeModel(intercept=zm - am @ B, effects=B, positives=A.sum(axis=0).astype(int), n=int(m.sum()), r2=r2)
