"""Contact sheet and single-core timing of ``identity-warp`` (issue 6) on held-out LFW people.

Chooses 24 fold-1 faces spread over sex (LFW gender lists), head yaw (from the 68 landmarks) and
skin tone (median luminance of the inner face), anonymizes each with ``identity-warp`` (default
parameters, research seed per face) and writes ``out/bench/identity_warp/contact_sheet.png``
(original | anonymized, 4 pairs per row, each labelled with the dlib distance) and ``timing.json``:
seconds per face on one torch thread with and without the refinement, split into encode / render /
refine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/identity_warp_sheet.py [--out out/bench/identity_warp]
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/bench/identity_warp")
    ap.add_argument("--n", type=int, default=24)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    from facedeid.bench.datasets import data_root, fold1_people, identities
    from facedeid.faces.detect import detect
    from facedeid.faces.landmarks import with_landmarks68
    from facedeid.identity.recognizers import DlibRecognizer
    from facedeid.media.images import read_image
    from facedeid.methods import Context, get_method
    from facedeid.metrics.quality import psnr, ssim
    from facedeid.metrics.utility import head_pose
    from facedeid.privacy.randomness import PrivacyRandom

    root = data_root()
    gender = {}
    with open(root / "lfw" / "lfw_subset_gender.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            gender[r["identity"]] = r["gender"]
    held = fold1_people()
    seen: set[str] = set()
    cands = []
    for path, ident in identities(dataset="lfw"):
        if ident not in held or ident in seen or gender.get(ident) not in ("male", "female"):
            continue
        seen.add(ident)
        img = read_image(path).rgb
        faces = detect(img, "centerface")
        if not faces:
            continue
        h, w = img.shape[:2]
        f = with_landmarks68(img, min(faces, key=lambda f: np.hypot(f.box.center[0] - w / 2, f.box.center[1] - h / 2)))
        yaw = head_pose(f.landmarks68, img.shape)[0]
        hull = cv2.convexHull(f.landmarks68.astype(np.int32))
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, hull, 1)
        lum = float(np.median(cv2.cvtColor(img, cv2.COLOR_RGB2LAB)[..., 0][mask > 0]))
        cands.append((path, img, f, gender[ident], yaw, lum))
        if len(cands) >= 240:
            break
    # spread: per sex, sort by (yaw bin, luminance) and take evenly spaced picks
    picks = []
    for sex, n in (("female", args.n // 2 - 2), ("male", args.n - (args.n // 2 - 2))):
        group = sorted([c for c in cands if c[3] == sex], key=lambda c: (np.digitize(c[4], [-15, -5, 5, 15]), c[5]))
        idx = np.linspace(0, len(group) - 1, n).round().astype(int)
        picks += [group[i] for i in idx]
    rec = DlibRecognizer()
    tiles, rows = [], []
    for i, (path, img, f, sex, yaw, lum) in enumerate(picks):
        m = get_method("identity-warp")
        t = time.perf_counter()
        res = m.apply(img, [f], Context(rng=PrivacyRandom(seed=100 + i)))
        sec = time.perf_counter() - t
        a = res.image
        d = float(np.linalg.norm(rec.embed(img, [f]) - rec.embed(a, [f])))
        rows.append({"file": str(path.relative_to(root)), "sex": sex, "yaw": round(yaw, 1), "luminance": round(lum, 1),
                     "dlib": round(d, 3), "psnr": round(psnr(img, a), 2), "ssim": round(ssim(img, a), 4), "seconds": round(sec, 3),
                     "refine_seconds": res.report["identity"][0].get("refine", {}).get("seconds")})
        pair = np.concatenate([img, a], axis=1)
        pair = cv2.resize(pair, (320, 160), interpolation=cv2.INTER_AREA)
        cv2.putText(pair, f"{d:.2f}", (165, 152), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(pair)
    grid = [np.concatenate(tiles[r:r + 4], axis=1) for r in range(0, len(tiles), 4)]
    sheet = np.concatenate(grid, axis=0)
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    # timing without refinement, same faces
    t_plain = []
    for i, (path, img, f, *_rest) in enumerate(picks):
        m = get_method("identity-warp", {"refine": "false"})
        t = time.perf_counter()
        m.apply(img, [f], Context(rng=PrivacyRandom(seed=100 + i)))
        t_plain.append(time.perf_counter() - t)
    summary = {"faces": len(rows), "mean_dlib": float(np.mean([r["dlib"] for r in rows])),
               "sdr_dlib": float(np.mean([r["dlib"] > 0.6 for r in rows])),
               "mean_psnr": float(np.mean([r["psnr"] for r in rows])), "mean_ssim": float(np.mean([r["ssim"] for r in rows])),
               "seconds_per_face_refined_1_thread": float(np.mean([r["seconds"] for r in rows])),
               "seconds_per_face_unrefined_1_thread": float(np.mean(t_plain)), "rows": rows}
    (out / "timing.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    print(f"contact sheet: {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
