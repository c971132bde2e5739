"""`facedeid bench`: run methods over LFW fold 1 and an identification set, evaluate, report.

For every method spec (and every value of every ``--sweep``):
  * LFW fold-1 pairs with the second image anonymized (Tables 4.1, 5.1, 6.1): identity distance,
    SDR, TAR/FAR at τ and TAR at FAR 1 % per recognizer, next to the originals' figures;
  * face detection rate of every detector on those anonymized images; PSNR and SSIM;
  * closed-set rank-1 identification of anonymized probes against clean galleries, and the adaptive
    attacker (:mod:`.attack`) — LFW identities with at least 4 images.
Work on images runs in a process pool (models loaded once per worker); originals' faces,
embeddings and crops are cached on disk.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..faces.align import warp_to_crop
from ..faces.types import Face
from ..identity.recognizers import distance
from ..media.images import read_image
from ..metrics.privacy import pair_verification, sdr
from ..metrics.quality import psnr, ssim
from .attack import lbph_rank1, nearest_mean_rank1, nearest_neighbour_rank1
from .datasets import Pair, fold1_people, identities, lfw_pairs

CROP = 96  # aligned grey crop for the LBPH attacker


# --------------------------------------------------------------------------- workers
_W: dict[str, Any] = {}


def _init_worker(detector: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ..evaluation import default_recognizers

    _W["recognizers"] = default_recognizers()
    _W["detector"] = detector


def _grey_crop(img: np.ndarray, face: Face) -> np.ndarray:
    import cv2

    crop, _ = warp_to_crop(img, face, CROP)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


def _embed_all(img: np.ndarray, face: Face) -> dict[str, np.ndarray]:
    return {r.name: r.embed(img, [face])[0] for r in _W["recognizers"]}


def _original(path: Path) -> tuple[str, Any]:
    from .lfw_pairs import main_face

    img = read_image(path).rgb
    face = main_face(img, _W["detector"])
    if face is None:
        return str(path), None
    return str(path), {"face": face, "emb": _embed_all(img, face), "crop": _grey_crop(img, face)}


def _anonymized(job: tuple[str, Face, str, int | None, tuple[str, ...]]) -> tuple[str, dict[str, Any]]:
    from ..bench.detection import match
    from ..faces.detect import detect
    from ..methods.base import Context
    from ..pipeline import anonymize
    from ..privacy.randomness import PrivacyRandom

    path, face, spec, seed, detectors = job
    img = read_image(path).rgb
    t0 = time.perf_counter()
    out = anonymize(img, spec, faces=[face], ctx=Context(rng=PrivacyRandom(seed))).image
    secs = time.perf_counter() - t0
    from ..evaluation import face_utility

    found_by = {d: detect(out, d) for d in {*detectors, _W["detector"]}}
    found = {d: match([face.box], [f.box for f in found_by[d]])[0] == 1 for d in detectors}
    return path, {"emb": _embed_all(out, face), "crop": _grey_crop(out, face), "detected": found,
                  "psnr": psnr(img, out), "ssim": ssim(img, out), "seconds": secs, "thumb": out,
                  "utility": face_utility(img, out, face, found_by[_W["detector"]])}


# --------------------------------------------------------------------------- data
@dataclass
class Protocol:
    pairs: list[Pair]
    probes: list[tuple[Path, str]]  # one photo per identity
    gallery: list[tuple[Path, str]]  # other photos of the same identities

    def images(self) -> list[Path]:
        return sorted({p.a for p in self.pairs} | {p.b for p in self.pairs} | {p for p, _ in self.probes} | {p for p, _ in self.gallery})

    def to_anonymize(self) -> list[Path]:
        return sorted({p.b for p in self.pairs} | {p for p, _ in self.probes} | {p for p, _ in self.gallery})


def build_protocol(n_pairs: int, n_identities: int, gallery_size: int = 4, held_out: bool = False) -> Protocol:
    """The first ``n_pairs/2`` matched and mismatched fold-1 pairs, and ``n_identities`` LFW people
    with ≥ gallery_size + 1 photos (probe = first photo, gallery = the next ones); with ``held_out``
    only people of fold 1, whom no model of the project has seen."""
    pairs = lfw_pairs()
    half = n_pairs // 2
    chosen = pairs[:half] + pairs[300 : 300 + half]
    by_id: dict[str, list[Path]] = {}
    for path, ident in identities(dataset="lfw"):
        by_id.setdefault(ident, []).append(path)
    allowed = fold1_people() if held_out else set(by_id)
    people = sorted(i for i, ps in by_id.items() if len(ps) >= gallery_size + 1 and i in allowed)[:n_identities]
    probes = [(sorted(by_id[i])[0], i) for i in people]
    gallery = [(p, i) for i in people for p in sorted(by_id[i])[1 : gallery_size + 1]]
    return Protocol(chosen, probes, gallery)


def _cache_key(paths: Sequence[Path], detector: str) -> str:
    h = hashlib.sha256(detector.encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def originals(pool: ProcessPoolExecutor, paths: Sequence[Path], detector: str, cache_dir: Path) -> dict[str, Any]:
    """Faces, embeddings and crops of the originals (cached on disk)."""
    cache = cache_dir / f"originals-{_cache_key(paths, detector)}.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    res = dict(pool.map(_original, paths, chunksize=8))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(res))
    return res


# --------------------------------------------------------------------------- figures
def _pair_figures(proto: Protocol, orig: dict, anon: dict, rec) -> dict[str, float]:
    usable = [p for p in proto.pairs if orig.get(str(p.a)) and orig.get(str(p.b)) and str(p.b) in anon]
    same = np.array([p.same for p in usable])
    e0 = lambda p: orig[str(p)]["emb"][rec.name]  # noqa: E731
    seconds = {str(p.b) for p in usable}
    own = np.array([distance(orig[b]["emb"][rec.name], anon[b]["emb"][rec.name], rec.metric)[0] for b in seconds])
    v, v0 = pair_verification(np.array([e0(p.a) for p in usable]), np.array([e0(p.b) for p in usable]),
                              np.array([anon[str(p.b)]["emb"][rec.name] for p in usable]), same, rec.metric, rec.threshold)
    return {"id_dis": float(own.mean()), "sdr": sdr(own, rec.threshold), "tar": v.tar, "far": v.far, "tar_far1": v.tar_at_far_1,
            "tar_orig": v0.tar, "far_orig": v0.far, "pairs": len(usable)}


def _identification(proto: Protocol, orig: dict, anon: dict | None, rec) -> dict[str, float]:
    """Rank-1 of (anonymized) probes vs clean gallery, and the adaptive attacker's rank-1."""
    src = anon if anon is not None else orig
    probes = [(p, i) for p, i in proto.probes if orig.get(str(p)) and str(p) in src]
    gal = [(p, i) for p, i in proto.gallery if orig.get(str(p)) and str(p) in src]
    pe = np.stack([src[str(p)]["emb"][rec.name] for p, _ in probes])
    pid = [i for _, i in probes]
    clean = np.stack([orig[str(p)]["emb"][rec.name] for p, _ in gal])
    gid = [i for _, i in gal]
    out = {"rank1": nearest_neighbour_rank1(clean, gid, pe, pid, rec.metric).rank1}
    attacked = np.stack([src[str(p)]["emb"][rec.name] for p, _ in gal])
    adaptive = nearest_mean_rank1(attacked, gid, pe, pid, rec.metric)
    out.update(adaptive_rank1=adaptive.rank1, chance=adaptive.chance)
    return out


def _lbph(proto: Protocol, orig: dict, anon: dict | None) -> float:
    src = anon if anon is not None else orig
    probes = [(p, i) for p, i in proto.probes if orig.get(str(p)) and str(p) in src]
    gal = [(p, i) for p, i in proto.gallery if orig.get(str(p)) and str(p) in src]
    return lbph_rank1([src[str(p)]["crop"] for p, _ in gal], [i for _, i in gal], [src[str(p)]["crop"] for p, _ in probes], [i for _, i in probes]).rank1


def method_rows(spec: str, proto: Protocol, orig: dict, anon: dict | None, recognizers, detectors: Sequence[str]) -> list[dict[str, Any]]:
    """One row per recognizer for a method (``anon=None``: the originals themselves)."""
    seconds_imgs = [str(p.b) for p in proto.pairs if str(p.b) in (anon or {})]
    common: dict[str, Any] = {"method": spec}
    if anon is not None:
        vals = [anon[s] for s in seconds_imgs]
        common.update(psnr=float(np.mean([v["psnr"] for v in vals if np.isfinite(v["psnr"])])), ssim=float(np.mean([v["ssim"] for v in vals])),
                      s_per_face=float(np.mean([v["seconds"] for v in vals])))
        for d in detectors:
            common[f"fdr_{d}"] = float(np.mean([v["detected"][d] for v in vals]))
        for key in ("landmark_all", "pose_error", "expr_mouth_open_rel", "emotion_same", "gender_same"):
            got = [v["utility"][key] for v in vals if key in v["utility"] and np.isfinite(v["utility"][key])]
            common[key] = float(np.mean(got)) if got else float("nan")
    common["lbph_adaptive_rank1"] = _lbph(proto, orig, anon)
    rows = []
    for rec in recognizers:
        row = dict(common, recognizer=rec.name)
        row.update(_pair_figures(proto, orig, anon, rec) if anon is not None else {})
        row.update(_identification(proto, orig, anon, rec))
        rows.append(row)
    return rows


def expand_sweeps(methods: Sequence[str], sweeps: Sequence[str]) -> list[str]:
    """Each method spec, and for every ``name=v1,v2`` sweep whose parameter it has, one spec per value
    (the swept value replaces the spec's own)."""
    from ..methods.base import parse_spec
    from ..pipeline import resolve_method

    out: list[str] = []
    for spec in methods:
        m = resolve_method(spec)
        out.append(spec)
        name, params = parse_spec(spec)
        for sw in sweeps:
            key, _, values = sw.partition("=")
            if not hasattr(m.params, key):
                continue
            for v in values.split(","):
                p = {**params, key: v.strip()}
                out.append(name + ":" + ",".join(f"{k}={val}" for k, val in p.items()))
    return list(dict.fromkeys(out))


def run(methods: Sequence[str], out_dir: Path, n_pairs: int = 600, n_identities: int = 100, detectors: Sequence[str] = ("hog", "haar", "centerface"),
        detector: str = "centerface", workers: int | None = None, seed: int | None = None, sweeps: Sequence[str] = (),
        held_out: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark and write the report files into ``out_dir``; returns the table rows."""
    from ..evaluation import default_recognizers

    specs = expand_sweeps(methods, sweeps)
    proto = build_protocol(n_pairs, n_identities, held_out=held_out)
    recognizers = default_recognizers()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    samples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count(), initializer=_init_worker, initargs=(detector,)) as pool:
        orig = originals(pool, proto.images(), detector, Path.home() / ".cache" / "facedeid" / "bench")
        rows += method_rows("original", proto, orig, None, recognizers, detectors)
        targets = [p for p in proto.to_anonymize() if orig.get(str(p))]
        for k, spec in enumerate(specs):
            t1 = time.perf_counter()
            jobs = [(str(p), orig[str(p)]["face"], spec, None if seed is None else seed + i, tuple(detectors)) for i, p in enumerate(targets)]
            anon = dict(pool.map(_anonymized, jobs, chunksize=4))
            new = method_rows(spec, proto, orig, anon, recognizers, detectors)
            for r in new:
                r["bench_seconds"] = time.perf_counter() - t1
            rows += new
            first = [str(p.b) for p in proto.pairs[:6]]
            samples[spec] = [(read_image(p).rgb, anon[p]["thumb"]) for p in first if p in anon]
            print(f"[{k + 1}/{len(specs)}] {spec}: {time.perf_counter() - t1:.0f} s", flush=True)
            _write(out_dir, rows, samples, n_pairs, len(proto.probes), detector, t0, seed, held_out)  # partial results survive
    _write(out_dir, rows, samples, n_pairs, len(proto.probes), detector, t0, seed, held_out)
    return rows


def _write(out_dir: Path, rows, samples, n_pairs: int, n_identities: int, detector: str, t0: float, seed: int | None,
           held_out: bool = False) -> None:
    from . import report

    report.write(out_dir, rows, samples, meta={"pairs": n_pairs, "identities": n_identities, "detector": detector,
                                                "seconds": time.perf_counter() - t0, "seed": seed, "held_out": held_out})
