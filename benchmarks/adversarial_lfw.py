"""Adversarial de-identification on LFW (book Ch. 3.1.3): white-box, transfer and robustness figures.

Part 1 — LFW View-2 fold 1, the first N/2 matched and N/2 mismatched pairs; each pair's *second* image
is the probe and is anonymized (faces: CenterFace, the face nearest the centre; recognizers get the
original face's landmarks, as in ``facedeid.bench.lfw_pairs``). For every method at every budget ε:

* SDR (Eq. 3.2, own distance > τ between the original probe and its anonymized version) for dlib —
  the white-box target — and MobileFaceNet (τ = 0.57 cosine) — an independent network the methods never
  see, so a *transfer* attack;
* the same after JPEG re-compression at quality 75 (PIL, 4:2:0) and after a 0.5× resize (OpenCV area)
  and back up (bilinear) of the anonymized image: the known weakness of pixel-level perturbations;
* TAR at τ on the pairs (second image anonymized), PSNR and SSIM of the whole image, s/face.

``noise:sigma=ε`` (Gaussian noise with the same standard deviation as a ±ε sign pattern) is run as the
non-adversarial baseline at the same distortion; "clean" is the untouched probe through JPEG/resize.

Part 2 — OPOM (``adv-opom``): LFW people with ≥ 5 photos; a person mask is fitted on the first 4 and
applied unchanged to the person's *unseen* photos (up to 3 more). Figures on the unseen photos: SDR
(own distance), "gallery SDR" (the anonymized photo matches none of the 4 clean fitting photos at τ),
MobileFaceNet transfer, JPEG/resize; a random ±ε mask in the same chip frame is the baseline.

    .venv/bin/python benchmarks/adversarial_lfw.py [--pairs 200] [--eps 4,8] [--opom-people 30] [--workers 2]

Timing is per face with one torch thread per worker, on whatever else the machine is doing.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

_W: dict[str, Any] = {}


def _init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("FACEDEID_TORCH_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from facedeid.evaluation import default_recognizers

    _W["recs"] = default_recognizers()  # dlib, mobilefacenet


def jpeg(img: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def half_and_back(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _embed_variants(img: np.ndarray, face) -> dict[str, dict[str, list[float]]]:
    out = {}
    for name, im in (("plain", img), ("jpeg75", jpeg(img)), ("half", half_and_back(img))):
        out[name] = {r.name: r.embed(im, [face])[0].tolist() for r in _W["recs"]}
    return out


def _original(path: str) -> tuple[str, Any]:
    from facedeid.bench.lfw_pairs import main_face
    from facedeid.media.images import read_image

    img = read_image(path).rgb
    face = main_face(img, "centerface")
    return path, None if face is None else {"face": face, "emb": _embed_variants(img, face)}


def _anonymize(job) -> tuple[str, str, dict[str, Any]]:
    from facedeid.media.images import read_image
    from facedeid.methods.base import Context
    from facedeid.metrics.quality import psnr, ssim
    from facedeid.pipeline import anonymize
    from facedeid.privacy.randomness import PrivacyRandom

    path, face, spec, seed = job
    img = read_image(path).rgb
    t0 = time.perf_counter()
    res = anonymize(img, spec, faces=[face], ctx=Context(rng=PrivacyRandom(seed)))
    secs = time.perf_counter() - t0
    out = res.image
    return spec, path, {"emb": _embed_variants(out, face), "psnr": psnr(img, out), "ssim": ssim(img, out), "seconds": secs,
                        "linf": int(np.abs(out.astype(int) - img.astype(int)).max())}


def _opom_person(job) -> dict[str, Any]:
    from facedeid.bench.lfw_pairs import main_face
    from facedeid.media.images import read_image
    from facedeid.methods import adversarial as adv
    from facedeid.methods.base import Context, get_method
    from facedeid.metrics.quality import psnr, ssim
    from facedeid.privacy.randomness import PrivacyRandom

    name, paths, eps, n_fit, seed, tmp = job
    imgs = [read_image(p).rgb for p in paths]
    faces = [main_face(i, "centerface") for i in imgs]
    keep = [k for k, f in enumerate(faces) if f is not None]
    imgs, faces, paths = [imgs[k] for k in keep], [faces[k] for k in keep], [paths[k] for k in keep]
    if len(imgs) <= n_fit:
        return {"person": name, "skipped": True}
    t0 = time.perf_counter()
    mask = adv.fit_person_mask(imgs[:n_fit], faces[:n_fit], adv.PersonMaskParams(eps=eps), PrivacyRandom(seed), meta={"person": name})
    fit_s = time.perf_counter() - t0
    mpath = mask.save(Path(tmp) / f"{name}-{eps:g}.npz")
    rnd = adv.PersonMask(np.sign(PrivacyRandom(seed + 1).normal((3, 150, 150))).astype(np.float32) * eps, float(eps))
    rpath = rnd.save(Path(tmp) / f"{name}-{eps:g}-random.npz")
    methods = {"opom": get_method("adv-opom", {"mask": str(mpath)}), "random": get_method("adv-opom", {"mask": str(rpath)})}
    rows = []
    for k, (img, face) in enumerate(zip(imgs, faces)):
        row: dict[str, Any] = {"seen": k < n_fit, "orig": _embed_variants(img, face)}
        for key, m in methods.items():
            t1 = time.perf_counter()
            out = m.apply(img, [face], Context()).image
            row[key] = {"emb": _embed_variants(out, face), "psnr": psnr(img, out), "ssim": ssim(img, out), "seconds": time.perf_counter() - t1}
        rows.append(row)
    return {"person": name, "eps": eps, "fit_seconds": fit_s, "rows": rows}


# ------------------------------------------------------------------------------------------------ figures
def _dist(a, b, metric: str) -> float:
    from facedeid.identity.recognizers import distance

    return float(distance(np.asarray(a), np.asarray(b), metric)[0])


def _recs():
    from facedeid.evaluation import default_recognizers

    return default_recognizers()


def pair_table(pairs, orig, anon, specs, recs) -> list[dict[str, Any]]:
    from facedeid.metrics.privacy import verification

    usable = [p for p in pairs if orig.get(str(p.a)) and orig.get(str(p.b))]
    probes = sorted({str(p.b) for p in usable})
    rows = []
    for spec in ["clean", *specs]:
        row: dict[str, Any] = {"method": spec, "probes": len(probes), "pairs": len(usable)}
        for r in recs:
            for variant in ("plain", "jpeg75", "half"):
                d = [_dist(orig[p]["emb"]["plain"][r.name], (orig[p]["emb"] if spec == "clean" else anon[spec][p]["emb"])[variant][r.name], r.metric)
                     for p in probes]
                row[f"sdr_{r.name}_{variant}"] = float(np.mean(np.array(d) > r.threshold))
                row[f"dist_{r.name}_{variant}"] = float(np.mean(d))
            src = (lambda p: orig[p]["emb"]["plain"][r.name]) if spec == "clean" else (lambda p: anon[spec][p]["emb"]["plain"][r.name])
            da = np.array([_dist(orig[str(p.a)]["emb"]["plain"][r.name], src(str(p.b)), r.metric) for p in usable])
            same = np.array([p.same for p in usable])
            row[f"tar_{r.name}"] = verification(da[same], da[~same], r.threshold).tar
        if spec != "clean":
            vals = [anon[spec][p] for p in probes]
            row.update(psnr=float(np.mean([v["psnr"] for v in vals])), ssim=float(np.mean([v["ssim"] for v in vals])),
                       s_per_face=float(np.mean([v["seconds"] for v in vals])), linf=max(v["linf"] for v in vals))
        rows.append(row)
    return rows


def opom_table(results, recs) -> list[dict[str, Any]]:
    rows = []
    for eps in sorted({r["eps"] for r in results if not r.get("skipped")}):
        people = [r for r in results if r.get("eps") == eps]
        for key in ("opom", "random"):
            for seen in (False, True):
                row: dict[str, Any] = {"method": f"{'adv-opom' if key == 'opom' else 'random ±ε mask'} ε={eps:g}", "photos": "seen (fit)" if seen else "unseen",
                                       "people": len(people)}
                items = [(p, x) for p in people for x in p["rows"] if x["seen"] == seen]
                row["n"] = len(items)
                for r in recs:
                    for variant in ("plain", "jpeg75", "half"):
                        d = np.array([_dist(x["orig"]["plain"][r.name], x[key]["emb"][variant][r.name], r.metric) for _, x in items])
                        row[f"sdr_{r.name}_{variant}"] = float(np.mean(d > r.threshold))
                        row[f"dist_{r.name}_{variant}"] = float(d.mean())
                    # gallery: the anonymized photo matches none of the person's clean fitting photos
                    g = [min(_dist(y["orig"]["plain"][r.name], x[key]["emb"]["plain"][r.name], r.metric) for y in p["rows"] if y["seen"] and y is not x)
                         for p, x in items]
                    row[f"gallery_sdr_{r.name}"] = float(np.mean(np.array(g) > r.threshold))
                    g0 = [min(_dist(y["orig"]["plain"][r.name], x["orig"]["plain"][r.name], r.metric) for y in p["rows"] if y["seen"] and y is not x)
                          for p, x in items]
                    row[f"gallery_sdr_clean_{r.name}"] = float(np.mean(np.array(g0) > r.threshold))
                row.update(psnr=float(np.mean([x[key]["psnr"] for _, x in items])), ssim=float(np.mean([x[key]["ssim"] for _, x in items])),
                           s_per_face=float(np.mean([x[key]["seconds"] for _, x in items])),
                           fit_s_per_person=float(np.mean([p["fit_seconds"] for p in people])) if key == "opom" else 0.0)
                rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def print_pair_table(rows) -> None:
    print("| method | SDR dlib (white-box) | SDR MFN (transfer) | SDR dlib JPEG75 | SDR MFN JPEG75 | SDR dlib 0.5× | SDR MFN 0.5× "
          "| Id-dis dlib | TAR dlib | TAR MFN | PSNR | SSIM | s/face |")
    print("|---|" + "---|" * 12)
    for r in rows:
        cells = [r["method"], r["sdr_dlib_plain"], r["sdr_mobilefacenet_plain"], r["sdr_dlib_jpeg75"], r["sdr_mobilefacenet_jpeg75"],
                 r["sdr_dlib_half"], r["sdr_mobilefacenet_half"], r["dist_dlib_plain"], r["tar_dlib"], r["tar_mobilefacenet"]]
        cells += [f"{r['psnr']:.2f}", r["ssim"], f"{r['s_per_face']:.2f}"] if "psnr" in r else ["–", "–", "–"]
        print("| " + " | ".join(_fmt(c) for c in cells) + " |")


def print_opom_table(rows) -> None:
    print("| mask | photos | people / photos | SDR dlib | gallery SDR dlib (clean) | SDR MFN | SDR dlib JPEG75 | SDR dlib 0.5× "
          "| Id-dis dlib | PSNR | SSIM | fit s/person | s/face |")
    print("|---|" + "---|" * 12)
    for r in rows:
        cells = [r["method"], r["photos"], f"{r['people']} / {r['n']}", r["sdr_dlib_plain"],
                 f"{r['gallery_sdr_dlib']:.3f} ({r['gallery_sdr_clean_dlib']:.3f})", r["sdr_mobilefacenet_plain"], r["sdr_dlib_jpeg75"],
                 r["sdr_dlib_half"], r["dist_dlib_plain"], f"{r['psnr']:.2f}", r["ssim"],
                 f"{r['fit_s_per_person']:.1f}" if r["fit_s_per_person"] else "–", f"{r['s_per_face']:.2f}"]
        print("| " + " | ".join(_fmt(c) for c in cells) + " |")


def main(argv=None) -> None:
    from facedeid.bench.datasets import identities, lfw_pairs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200, help="first N/2 matched + N/2 mismatched pairs of fold 1")
    ap.add_argument("--eps", default="4,8")
    ap.add_argument("--methods", default="adv-pgd,adv-target,adv-pgd:ensemble=true,noise",
                    help="comma-separated; ':key=value;key=value' adds parameters; eps (sigma for noise) is swept")
    ap.add_argument("--opom-people", type=int, default=30)
    ap.add_argument("--opom-fit", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="research seed of the methods' random starts (figures reproducible)")
    ap.add_argument("--out", default="out/bench/adversarial")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    eps_list = [float(e) for e in args.eps.split(",")]
    specs = []
    for m in args.methods.split(","):
        name, _, extra = m.partition(":")
        extra = extra.replace(";", ",")
        for e in eps_list:
            key = "sigma" if name == "noise" else "eps"
            specs.append(f"{name}:{key}={e:g}" + (f",{extra}" if extra else ""))
    all_pairs = lfw_pairs()
    half = args.pairs // 2
    pairs = all_pairs[:half] + all_pairs[300 : 300 + half]
    recs = _recs()
    t0 = time.perf_counter()
    results: dict[str, Any] = {"args": vars(args), "specs": specs}
    with ProcessPoolExecutor(args.workers, initializer=_init) as pool:
        paths = sorted({str(p.a) for p in pairs} | {str(p.b) for p in pairs})
        orig = dict(pool.map(_original, paths, chunksize=4))
        probes = sorted({str(p.b) for p in pairs if orig.get(str(p.a)) and orig.get(str(p.b))})
        print(f"{len(pairs)} pairs, {len(probes)} probes with faces, originals in {time.perf_counter() - t0:.0f} s", flush=True)
        anon: dict[str, dict[str, Any]] = {s: {} for s in specs}
        jobs = [(p, orig[p]["face"], s, args.seed + i) for s in specs for i, p in enumerate(probes)]
        for spec, path, res in pool.map(_anonymize, jobs, chunksize=2):
            anon[spec][path] = res
            if len(anon[spec]) == len(probes):
                print(f"  {spec}: done at {time.perf_counter() - t0:.0f} s", flush=True)
        rows = pair_table(pairs, orig, anon, specs, recs)
        results["pairs"] = rows
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
        print(f"\nLFW fold 1: {len(pairs)} pairs, {len(probes)} probes (second images) anonymized, research seed {args.seed}\n")
        print_pair_table(rows)
        if args.opom_people > 0:
            by_id: dict[str, list[str]] = {}
            for path, ident in identities(dataset="lfw"):
                by_id.setdefault(ident, []).append(str(path))
            people = sorted(i for i, ps in by_id.items() if len(ps) >= args.opom_fit + 1)[: args.opom_people]
            t1 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                jobs = [(n, sorted(by_id[n])[: args.opom_fit + 3], e, args.opom_fit, args.seed + k, tmp) for e in eps_list for k, n in enumerate(people)]
                opom = list(pool.map(_opom_person, jobs))
            orows = opom_table(opom, recs)
            results["opom"] = orows
            (out_dir / "results.json").write_text(json.dumps(results, indent=1))
            print(f"\nOPOM: {len(people)} LFW people with ≥ {args.opom_fit + 1} photos, mask fitted on {args.opom_fit}, "
                  f"applied to ≤ 3 unseen photos each ({time.perf_counter() - t1:.0f} s)\n")
            print_opom_table(orows)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; figures in {out_dir / 'results.json'}")


if __name__ == "__main__":
    main()
