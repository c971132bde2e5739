"""``facedeid model build``: learn the parametric face model from identity-labelled photos.

Steps (all reproducible; no randomness):

1. every image listed in ``identities.csv`` of the data folder, except the *held-out* people — the LFW
   people of View-2 fold 1 (``lfw/pairs_fold1.txt``), on whom everything is evaluated — and
   ``named_faces`` (the same people as LFW under other labels): CenterFace (HOG if it finds nothing),
   the largest face, dlib's 68 landmarks;
2. each face's weak-perspective pose and frontal shape (:mod:`facedeid.model.shape`);
3. shape model: PCA of the frontal shapes, identity subspace by LDA (:mod:`facedeid.model.subspace`);
4. texture model: colour faces whose eyes are ≥ 24 px apart, warped onto the mean shape
   (:mod:`facedeid.model.texture`), detail layer, PCA, identity subspace by LDA;
5. the identity codes' per-person means (no single photo's code is stored) for k-anonymous targets;
6. ``face_model.npz`` (float16 bases) and ``PROVENANCE.md`` written atomically.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bench.datasets import data_root as default_data_root
from ..bench.datasets import fold1_people, identities
from ..faces.detect import detect
from ..faces.landmarks import landmarks68
from ..media.images import read_image, write_atomic
from .mesh import triangulate
from .shape import fit_pose, frontal_shape
from .subspace import fit_subspace
from .texture import Canvas

N_SHAPE_PCA = 40
N_SHAPE_ID = 16
N_TEX_PCA = 64
N_TEX_ID = 32
MIN_EYE_DISTANCE_TEXTURE = 24.0
RING_POINTS = 20
RING_SCALE = 1.45
EXCLUDED_DATASETS = ("named_faces",)


@dataclass
class Sample:
    path: str
    identity: str
    dataset: str
    l68: np.ndarray
    shape: tuple[int, int, int]
    grey: bool


def _largest_face(rgb: np.ndarray):
    faces = detect(rgb, "centerface") or detect(rgb, "hog")
    if not faces:
        return None
    return max(faces, key=lambda f: f.box.width * f.box.height)


def collect(root: Path, cache: Path | None = None, log=print, held: set[str] | None = None) -> list[Sample]:
    """Landmarks of every build image (cached in ``cache`` as .npz keyed by relative path); ``held``
    (default: the LFW people of View-2 fold 1) are never used."""
    held = fold1_people(root) if held is None else held
    cached: dict[str, tuple] = {}
    if cache and cache.exists():
        z = np.load(cache, allow_pickle=False)
        for i, rel in enumerate(z["path"]):
            cached[str(rel)] = (z["l68"][i], tuple(z["shape"][i]), bool(z["grey"][i]))
    samples: list[Sample] = []
    todo = []
    for path, ident in identities(root):
        rel = str(path.relative_to(root))
        ds = rel.split("/")[0]
        if ds in EXCLUDED_DATASETS or (ds == "lfw" and ident in held):
            continue
        todo.append((path, rel, ident, ds))
    t0 = time.time()
    for n, (path, rel, ident, ds) in enumerate(todo):
        if rel in cached:
            l68, shape, grey = cached[rel]
            if np.isfinite(l68).all():
                samples.append(Sample(rel, ident, ds, l68, shape, grey))
            continue
        dec = read_image(path)
        rgb = dec.rgb
        c = rgb.astype(np.int16)
        grey = bool(np.abs(c[..., 0] - c[..., 1]).max() < 3 and np.abs(c[..., 1] - c[..., 2]).max() < 3)
        face = _largest_face(rgb)
        l68 = landmarks68(rgb, face.box) if face is not None else np.full((68, 2), np.nan)
        cached[rel] = (l68, rgb.shape, grey)
        if face is not None:
            samples.append(Sample(rel, ident, ds, l68, rgb.shape, grey))
        if n % 200 == 0:
            log(f"  landmarks {n}/{len(todo)} ({time.time() - t0:.0f} s)")
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(cached)
        np.savez(cache, path=np.array(keys), l68=np.array([cached[k][0] for k in keys]),
                 shape=np.array([cached[k][1] for k in keys]), grey=np.array([cached[k][2] for k in keys]))
    return samples


def ring(mean_frontal: np.ndarray, n: int = RING_POINTS, scale: float = RING_SCALE) -> np.ndarray:
    """Fixed points on an ellipse around the mean shape: the warp's zero-displacement boundary."""
    lo, hi = mean_frontal.min(axis=0), mean_frontal.max(axis=0)
    c, half = (lo + hi) / 2, (hi - lo) / 2 * scale
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([c[0] + half[0] * np.cos(t), c[1] + half[1] * np.sin(t)], axis=1)


def identity_means(codes: np.ndarray, labels: np.ndarray, min_count: int = 2) -> np.ndarray:
    ids, counts = np.unique(labels, return_counts=True)
    return np.array([codes[labels == i].mean(axis=0) for i in ids[counts >= min_count]])


def build(root: Path, out: Path, cache: Path | None = None, log=print) -> dict:
    """Build the model from the data under ``root`` and write it to the folder ``out``."""
    t0 = time.time()
    held = fold1_people(root)
    samples = collect(root, cache, log, held)
    log(f"{len(samples)} faces with landmarks ({time.time() - t0:.0f} s)")
    poses = [fit_pose(s.l68, s.shape) for s in samples]
    frontal = np.array([frontal_shape(s.l68, p) for s, p in zip(samples, poses)])
    labels = np.array([s.identity for s in samples])
    shape_sub = fit_subspace(frontal.reshape(len(samples), -1), labels, N_SHAPE_PCA, N_SHAPE_ID)
    mean_frontal = shape_sub.mean.reshape(68, 2)
    canvas = Canvas.create(mean_frontal, triangulate(mean_frontal))
    geo_ring = ring(mean_frontal)
    geo_tri = triangulate(np.concatenate([mean_frontal, geo_ring]))
    # texture
    tex_rows, tex_labels, tex_idx = [], [], []
    for i, s in enumerate(samples):
        eyes = np.linalg.norm(s.l68[36:42].mean(axis=0) - s.l68[42:48].mean(axis=0))
        if s.grey or eyes < MIN_EYE_DISTANCE_TEXTURE or abs(np.degrees(np.arcsin(np.clip(-poses[i].rotation[0, 2], -1, 1)))) > 35:
            continue
        rgb = read_image(root / s.path).rgb
        tex = canvas.extract(rgb, s.l68)
        tex_rows.append(canvas.to_vector(canvas.detail(tex)).astype(np.float32))
        tex_labels.append(s.identity)
        tex_idx.append(i)
    log(f"{len(tex_rows)} textures ({time.time() - t0:.0f} s)")
    tex_labels_a = np.array(tex_labels)
    tex_sub = fit_subspace(np.asarray(tex_rows, dtype=np.float64), tex_labels_a, N_TEX_PCA, N_TEX_ID)
    shape_codes = shape_sub.code(shape_sub.coefficients(frontal.reshape(len(samples), -1)))
    tex_codes = tex_sub.code(tex_sub.coefficients(np.asarray(tex_rows, dtype=np.float64)))
    joint = np.concatenate([shape_codes[tex_idx], tex_codes], axis=1)
    means = identity_means(joint, tex_labels_a)
    counts = Counter(s.dataset for s in samples)
    tex_counts = Counter(samples[i].dataset for i in tex_idx)
    provenance = {
        "built": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "facedeid model build --data <shared/data> --out src/facedeid/model/data",
        "data": "identities.csv of the shared test data (LFW deep-funneled, CelebA subset, ORL, Yale, deepface); "
                "LFW people of View-2 fold 1 held out; named_faces excluded",
        "shape_faces": dict(counts), "shape_identities": int(len(set(labels))),
        "texture_faces": dict(tex_counts), "texture_identities": int(len(set(tex_labels))),
        "held_out_lfw_people": len(held),
        "shape_pca": N_SHAPE_PCA, "shape_identity_dims": N_SHAPE_ID, "texture_pca": N_TEX_PCA, "texture_identity_dims": N_TEX_ID,
        "canvas": canvas.size, "detail_sigma": canvas.sigma, "fisher_ratio_shape": [round(float(x), 3) for x in shape_sub.lam],
        "fisher_ratio_texture": [round(float(x), 3) for x in tex_sub.lam],
        "python": platform.python_version(), "seconds": round(time.time() - t0, 1),
    }
    arrays = {**shape_sub.to_arrays("shape"), **tex_sub.to_arrays("texture")}
    arrays = {k: (v.astype(np.float16) if k.endswith("basis") else v.astype(np.float32)) for k, v in arrays.items()}
    arrays.update(canvas_points=canvas.points.astype(np.float32), canvas_triangles=canvas.triangles, detail_sigma=np.float32(canvas.sigma),
                  geo_ring=geo_ring.astype(np.float32), geo_triangles=geo_tri,
                  identity_means=means.astype(np.float32), provenance=np.array(json.dumps(provenance)))
    out.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(out / "face_model.npz", buf.getvalue())
    write_atomic(out / "PROVENANCE.md", _provenance_md(provenance).encode())
    log(f"model written to {out} ({(out / 'face_model.npz').stat().st_size / 1e6:.2f} MB, {time.time() - t0:.0f} s)")
    return provenance


def _provenance_md(p: dict) -> str:
    lines = ["# face_model.npz — provenance", "",
             "Built by the project's own code from the shared test data; nothing downloaded.", "",
             f"- command: `{p['command']}`", f"- built: {p['built']} in {p['seconds']} s (Python {p['python']})",
             f"- data: {p['data']}",
             f"- shape model: {sum(p['shape_faces'].values())} faces of {p['shape_identities']} people {p['shape_faces']}; "
             f"PCA {p['shape_pca']}, identity subspace {p['shape_identity_dims']} (LDA)",
             f"- texture model: {sum(p['texture_faces'].values())} faces of {p['texture_identities']} people {p['texture_faces']}; "
             f"canvas {p['canvas']}×{p['canvas']}, detail layer σ = {p['detail_sigma']} px, PCA {p['texture_pca']}, identity subspace {p['texture_identity_dims']} (LDA)",
             f"- held out: {p['held_out_lfw_people']} LFW people of View-2 fold 1 (the evaluation set)",
             "- stored: PCA bases (float16), LDA projections and patterns, the mean shape's meshes, and per-person means of the "
             "identity codes (people with ≥ 2 photos) — no photo, texture or per-photo code.",
             "- licence of the data: research use (LFW, CelebA non-commercial); see shared/data/MANIFEST.md.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    root = Path(args.data) if args.data else default_data_root()
    out = Path(args.out) if args.out else Path(__file__).parent / "data"
    build(root, out, Path(args.cache) if args.cache else None)
    return 0


if __name__ == "__main__":
    from ..cli import main

    raise SystemExit(main(["model", "build", *__import__("sys").argv[1:]]))
