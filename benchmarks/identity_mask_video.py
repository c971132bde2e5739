"""IdentityMask on real clips (issue 8, item 5; book Tables 8.4, 8.6, 8.9 and Fig. 8.13).

For each clip (first ``--frames`` frames, cut once so every method sees the same source):

* identity-mask (first frame edited, the edit carried by motion, "MF"),
* the same method applied per frame without motion propagation ("w/o MF"),
* blur (the project's ``blur`` through the video pipeline),
* recovery: right key (sealed edit payload, as a sidecar and inside the video), two wrong keys
  (rotation path; and how far apart their two decoys are), and the right key on the rotation path
  without the payload (the limitation the module doc describes),
* a keyless attack on the masked video: every face's identity code set to the model's mean identity
  (undoing the mask's outward code step without the key; the origin estimate the rotation path of
  recovery repels), frame by frame,

with the book's video metrics: identity distance, CSIM and match rate per recognizer (dlib, and
MobileFaceNet, which the method never sees), POSE (mean absolute yaw/pitch/roll error, degrees),
EXP (mean absolute change of mouth/eye opening ratios), AKD (pixels), temporal identity invariance
(TII: mean dlib distance between consecutive output frames; the original's own value is given),
flicker ratio (1 = no flicker added), and speed. Fig. 8.13: cumulative seconds against the number of
frames, propagation vs per-frame processing. Writes out/bench/identity_mask/report.md, results.json
and one frame strip per clip. The identity figures are those of facedeid.metrics.video
(identity_per_frame, temporal_identity_invariance) computed from embeddings cached once per clip.

    .venv/bin/python benchmarks/identity_mask_video.py [--frames 60] [--clips a.mp4 b.mp4 ...]
    .venv/bin/python benchmarks/identity_mask_video.py --container-check --frames 10 --out out/bench/identity_mask_inside
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from facedeid.bench.datasets import data_root
from facedeid.evaluation import default_recognizers
from facedeid.faces.detect import detect
from facedeid.media.video import probe, read_frames
from facedeid.methods import get_method
from facedeid.metrics.utility import expression_ratios, head_pose, pose_error
from facedeid.identity.recognizers import cosine_similarity, distance
from facedeid.metrics.video import average_keypoint_distance, flicker, frame_landmarks
from facedeid.video_mask import aligned_face, mask_video, motion_fit, recover_video, stream_video
from facedeid.video_pipeline import anonymize_video

CLIPS = ["retalking_face_3.mp4", "lp_driving_d3.mp4", "faceswapss_test_video_03-2_faces.mp4"]
KEY, WRONG, WRONG2 = "bench-key-2024", "not-the-key", "another guess"
OUT = Path("out/bench/identity_mask")


def _frames(path: Path, n: int) -> list[np.ndarray]:
    return [f for i, _, f in read_frames(path) if i < n]


def _faces(frames: list[np.ndarray]) -> list[list]:
    return [detect(f, "centerface", with_68=True) for f in frames]


class _Cache:
    """Embeddings and landmarks of the original (and masked) frames, computed once per clip."""

    def __init__(self, orig, faces, recs) -> None:
        self.orig, self.faces, self.recs = orig, faces, recs
        self.emb_orig = {r.name: self.embed(r, orig) for r in recs}
        self.l68_orig = frame_landmarks(orig, faces)
        self.emb_masked: dict | None = None

    def embed(self, rec, frames):
        return [rec.embed(f, fs) if fs else None for f, fs in zip(frames, self.faces)]


def _identity(a, b, rec) -> tuple[float, float, float]:
    """Mean distance, CSIM and match rate between two lists of per-frame embeddings."""
    d, c, m = [], [], []
    for ea, eb in zip(a, b):
        if ea is None or eb is None:
            continue
        dist = distance(ea, eb, rec.metric)
        d.extend(dist.tolist())
        c.extend(cosine_similarity(ea, eb).tolist())
        m.extend((dist <= rec.threshold).tolist())
    nan = float("nan")
    return (float(np.mean(d)), float(np.mean(c)), float(np.mean(m))) if d else (nan, nan, nan)


def _tii(emb, rec) -> float:
    out = []
    for ea, eb in zip(emb, emb[1:]):
        if ea is not None and eb is not None:
            k = min(len(ea), len(eb))
            out.extend(distance(ea[:k], eb[:k], rec.metric).tolist())
    return float(np.mean(out)) if out else float("nan")


def _geometry(cache: _Cache, out: list[np.ndarray]) -> dict[str, float]:
    lo, la = cache.l68_orig, frame_landmarks(out, cache.faces)
    pose, exp = [], []
    for t, (a, b) in enumerate(zip(lo, la)):
        if a is None:
            continue
        shape = cache.orig[t].shape
        for k in range(len(a) // 68):
            pa, pb = a[68 * k:68 * (k + 1)], b[68 * k:68 * (k + 1)]
            try:
                pose.append(pose_error(head_pose(pa, shape), head_pose(pb, shape))["mean"])
            except ValueError:
                pass
            ea, eb = expression_ratios(pa), expression_ratios(pb)
            exp.append(np.mean([abs(ea["mouth_open"] - eb["mouth_open"]), abs(ea["eye_open"] - eb["eye_open"])]))
    return {"pose": float(np.mean(pose)) if pose else float("nan"), "exp": float(np.nanmean(exp)) if exp else float("nan"),
            "akd": average_keypoint_distance(lo, la)}


def _metrics(cache: _Cache, out, masked: bool = False) -> tuple[dict, dict]:
    row: dict = {}
    embs = {}
    for r in cache.recs:
        embs[r.name] = cache.embed(r, out)
        row[f"dist_{r.name}"], row[f"csim_{r.name}"], row[f"match_{r.name}"] = _identity(cache.emb_orig[r.name], embs[r.name], r)
        if masked and cache.emb_masked is not None:
            row[f"dist_to_masked_{r.name}"] = _identity(cache.emb_masked[r.name], embs[r.name], r)[0]
    row.update(_geometry(cache, out))
    row["tii"] = _tii(embs[cache.recs[0].name], cache.recs[0])
    row["flicker"] = flicker(cache.orig, out, cache.faces).ratio
    return row, embs


def _curve(rep: dict) -> list[float]:
    return [fr["elapsed"] for fr in rep["per_frame"]]


def _strip(path: Path, rows: dict[str, list[np.ndarray]], faces: list[list], picks: list[int]) -> None:
    """Rows = outputs, columns = frames, each cell the face region (union of the faces) at 160 px height."""
    cells = []
    for name, frames in rows.items():
        line = []
        for t in picks:
            fs = faces[t] or faces[0]
            x0 = int(max(0, min(f.box.x0 for f in fs) - 0.25 * fs[0].box.width))
            x1 = int(min(frames[t].shape[1], max(f.box.x1 for f in fs) + 0.25 * fs[0].box.width))
            y0 = int(max(0, min(f.box.y0 for f in fs) - 0.35 * fs[0].box.height))
            y1 = int(min(frames[t].shape[0], max(f.box.y1 for f in fs) + 0.2 * fs[0].box.height))
            crop = frames[t][y0:y1, x0:x1]
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * 160 / crop.shape[0])), 160), interpolation=cv2.INTER_AREA)
            line.append(crop)
        img = np.concatenate(line, axis=1)
        label = np.full((160, 150, 3), 255, np.uint8)
        cv2.putText(label, name, (4, 84), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(np.concatenate([label, img], axis=1))
    width = max(c.shape[1] for c in cells)
    cells = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0)), constant_values=255) for c in cells]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(cells, axis=0), cv2.COLOR_RGB2BGR))


def keyless_attack(src: Path, dst: Path) -> None:
    """An attacker with this tool but no key: each detected face of the masked video ``src`` is
    encoded and rendered with the model's mean identity code (no refinement), written to ``dst``."""
    from facedeid.model.core import IdentityCode, load_model

    model = load_model()

    def fn(i: int, t: float, rgb: np.ndarray) -> np.ndarray:
        out = rgb
        for face in detect(rgb, "centerface", with_68=True):
            if face.landmarks68 is None:
                continue
            crop, cface, _ = aligned_face(rgb, face)
            fit = model.encode(crop, cface)
            edit = model.plan_edit(crop, fit, IdentityCode.from_vector(np.zeros(model.dim), model.n_shape), None)
            out = model.apply_edit(out, motion_fit(face.landmarks68, rgb.shape), edit).image
        return out

    stream_video(src, dst, fn)


def run_clip(name: str, n: int, recs, tmp: Path, exact: bool) -> dict:
    src = tmp / f"src_{name}"
    stream_video(data_root() / "videos" / name, src, lambda i, t, f: f, quality=14, max_frames=n)
    info = probe(src)
    orig = _frames(src, n)
    faces = _faces(orig)
    res: dict = {"clip": name, "size": f"{info.width}x{info.height}", "frames": info.frames, "audio": bool(info.audio),
                 "faces_per_frame": float(np.mean([len(f) for f in faces])), "rows": {}, "curves": {}}
    outs: dict[str, Path] = {}

    def timed(label, fn):
        t0 = time.perf_counter()
        rep = fn()
        res.setdefault("seconds", {})[label] = round(time.perf_counter() - t0, 2)
        print(f"  {name} {label}: {res['seconds'][label]} s", flush=True)
        return rep

    outs["identity-mask (MF)"] = tmp / f"mf_{name}"
    rep_mf = timed("identity-mask (MF)", lambda: mask_video(src, outs["identity-mask (MF)"], KEY))
    outs["w/o MF (per frame)"] = tmp / f"pf_{name}"
    rep_pf = timed("w/o MF (per frame)", lambda: mask_video(src, outs["w/o MF (per frame)"], KEY, propagate=False))
    outs["blur"] = tmp / f"blur_{name}"
    timed("blur", lambda: anonymize_video(src, outs["blur"], get_method("blur")))
    outs["recovery, right key (edit payload)"] = tmp / f"rec_{name}"
    timed("recovery, right key (edit payload)", lambda: recover_video(outs["identity-mask (MF)"], outs["recovery, right key (edit payload)"], KEY))
    outs["recovery, wrong key (rotation path)"] = tmp / f"wrong_{name}"
    timed("recovery, wrong key (rotation path)", lambda: recover_video(outs["identity-mask (MF)"], outs["recovery, wrong key (rotation path)"], WRONG))
    outs["recovery, another wrong key (rotation path)"] = tmp / f"wrong2_{name}"
    timed("recovery, another wrong key (rotation path)",
          lambda: recover_video(outs["identity-mask (MF)"], outs["recovery, another wrong key (rotation path)"], WRONG2))
    outs["right key, rotation path (no payload)"] = tmp / f"rot_{name}"
    timed("right key, rotation path (no payload)",
          lambda: recover_video(outs["identity-mask (MF)"], outs["right key, rotation path (no payload)"], KEY, use_payload=False))
    outs["attack, no key (identity code set to the mean)"] = tmp / f"attack_{name}"
    timed("attack, no key (identity code set to the mean)",
          lambda: keyless_attack(outs["identity-mask (MF)"], outs["attack, no key (identity code set to the mean)"]))
    inside = tmp / f"inside_{name}"
    rep_in = timed("identity-mask, payload inside the video", lambda: mask_video(src, inside, KEY, embed=True))
    outs["recovery, right key (payload inside the video)"] = tmp / f"inrec_{name}"
    timed("recovery, right key (payload inside the video)",
          lambda: recover_video(inside, outs["recovery, right key (payload inside the video)"], KEY))
    res["payload_bytes"] = {"edit": rep_mf["payload"].get("bytes"), "inside": rep_in["payload"].get("bytes")}
    if exact:
        ex = tmp / f"ex_{name}"
        rep_ex = timed("identity-mask, exact payload", lambda: mask_video(src, ex, KEY, payload="exact"))
        res["payload_bytes"]["exact"] = rep_ex["payload"].get("bytes")
        outs["recovery, right key (exact payload)"] = tmp / f"exrec_{name}"
        timed("recovery, right key (exact payload)", lambda: recover_video(ex, outs["recovery, right key (exact payload)"], KEY))
    res["curves"] = {"MF": _curve(rep_mf), "w/o MF": _curve(rep_pf)}
    res["tracks"] = {"MF": rep_mf["tracks"], "w/o MF": [{k: v for k, v in t.items() if k != "per_frame"} for t in rep_pf["tracks"]]}
    res["kept"] = {k: (lambda o: (o.width, o.height, o.frames, bool(o.audio)) == (info.width, info.height, info.frames, bool(info.audio)))(probe(p))
                   for k, p in outs.items()}
    cache = _Cache(orig, faces, recs)
    decoded: dict[str, list[np.ndarray]] = {"original": orig}
    for label, path in outs.items():  # the masked output comes first: its embeddings serve the recovery rows
        frames = _frames(path, n)
        res["rows"][label], embs = _metrics(cache, frames, masked=_from_masked(label))
        if label == "identity-mask (MF)":
            cache.emb_masked = embs
        if label == "recovery, wrong key (rotation path)":
            wrong_embs = embs
        if label == "recovery, another wrong key (rotation path)":  # two decoys: different identities?
            res["wrong_keys_apart"] = {r.name: _identity(wrong_embs[r.name], embs[r.name], r)[0] for r in recs}
        if label in ("identity-mask (MF)", "w/o MF (per frame)", "blur", "recovery, right key (edit payload)", "recovery, wrong key (rotation path)"):
            decoded[label] = frames
        print(f"  {name} metrics {label}", flush=True)
    res["original_tii"] = _tii(cache.emb_orig[recs[0].name], recs[0])
    _strip(OUT / f"strip_{Path(name).stem}.png", decoded, faces, [0, n // 2, n - 1])
    return res


def _f(x, d=3) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"


def _from_masked(label: str) -> bool:
    """Rows made from the masked video (recoveries and the attack): Table 8.9, with distance to the masked."""
    return any(w in label for w in ("recovery", "rotation", "attack"))


def report(results: list[dict], recs, n: int) -> str:
    rn = [r.name for r in recs]
    lines = ["# IdentityMask on video (book Ch. 8.4; Tables 8.4, 8.6, 8.9; Fig. 8.13)", "",
             f"First {n} frames of each clip, key `{KEY}`, θ = 60°, centerface detection every frame. Identity columns: mean over "
             "frames and faces of the recognizer distance (dlib Euclidean, τ 0.6; MobileFaceNet cosine distance) between the original "
             "face and the output face at the original's box, CSIM (cosine similarity of the embeddings) and match = share of faces the "
             "recognizer still verifies as the original (lower is better for de-identification, higher for recovery). "
             "MobileFaceNet is never used by the method. POSE: mean |Δyaw, Δpitch, Δroll| (°). EXP: mean |Δ| of mouth- and "
             "eye-opening ratios. AKD: mean 68-landmark distance (px). TII: mean dlib distance between consecutive output frames "
             "(lower = steadier identity; the original's own TII is given per clip). Flicker: temporal change in the face regions "
             "relative to the original's (1 = none added).", ""]
    head = ["clip", "output", *[f"dist {r}" for r in rn], *[f"CSIM {r}" for r in rn], *[f"match {r}" for r in rn],
            "POSE °", "EXP", "AKD px", "TII", "flicker", "s", "fps"]
    lines += ["## Table 8.4/8.6 layout: de-identification and utility", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        for label, row in res["rows"].items():
            if _from_masked(label):
                continue
            s = res["seconds"].get(label)
            lines.append("| " + " | ".join([res["clip"], label, *[_f(row[f"dist_{r}"]) for r in rn], *[_f(row[f"csim_{r}"]) for r in rn],
                                             *[_f(row[f"match_{r}"], 2) for r in rn], _f(row["pose"], 2), _f(row["exp"]), _f(row["akd"], 2),
                                             _f(row["tii"]), _f(row["flicker"], 2), _f(s, 1), _f(res["frames"] / s if s else None, 2)]) + " |")
        lines.append(f"| {res['clip']} | original (reference) | | | | | | | | | | {_f(res['original_tii'])} | 1 | | |")
    lines += ["", "## Table 8.9 layout: recovery", "",
              "| clip | output | " + " | ".join(f"dist to original {r}" for r in rn) + " | " + " | ".join(f"match original {r}" for r in rn)
              + " | " + " | ".join(f"dist to masked {r}" for r in rn) + " | POSE ° | AKD px | s |", "|" + "---|" * (3 + 3 * len(rn) + 2)]
    for res in results:
        for label, row in res["rows"].items():
            if not _from_masked(label):
                continue
            lines.append("| " + " | ".join([res["clip"], label, *[_f(row[f"dist_{r}"]) for r in rn], *[_f(row[f"match_{r}"], 2) for r in rn],
                                             *[_f(row.get(f"dist_to_masked_{r}")) for r in rn], _f(row["pose"], 2), _f(row["akd"], 2),
                                             _f(res["seconds"].get(label), 1)]) + " |")
    lines += ["", "Distance between the outputs of the two wrong keys (are the decoys different people?): "
              + "; ".join(f"{r['clip']}: " + ", ".join(f"{k} {_f(v)}" for k, v in r.get("wrong_keys_apart", {}).items()) for r in results)]
    lines += ["", "Sidecar sizes (bytes): " + "; ".join(f"{r['clip']}: {r['payload_bytes']}" for r in results), ""]
    lines += ["## Fig. 8.13: seconds vs number of frames (cumulative, measured inside one run)", ""]
    marks = sorted({1, *range(10, n + 1, 10), n})
    lines += ["| clip | method | " + " | ".join(f"{m} fr" for m in marks) + " | s/frame after the first |", "|" + "---|" * (len(marks) + 3)]
    for res in results:
        for key, curve in res["curves"].items():
            vals = [curve[m - 1] if m - 1 < len(curve) else None for m in marks]
            slope = (curve[-1] - curve[0]) / (len(curve) - 1) if len(curve) > 1 else None
            lines.append(f"| {res['clip']} | {key} | " + " | ".join(_f(v, 1) for v in vals) + f" | {_f(slope, 3)} |")
    lines += ["", "![seconds vs frames](fig_8_13.png)", "", "## Frames (rows: outputs; columns: first, middle, last frame)", ""]
    lines += [f"![{r['clip']}](strip_{Path(r['clip']).stem}.png)" for r in results]
    lines += ["", "## Tracks (key-frame planning)", ""]
    for res in results:
        for t in res["tracks"]["MF"]:
            lines.append(f"- {res['clip']} MF track {t['id']}: first frame {t['first_frame']}, {t['frames']} frames ({t['held_frames']} held by flow), "
                         f"strength {t.get('strength')}, refine {t.get('refine')}, plan {t.get('seconds')} s")
    lines.append("")
    lines.append("Output kept size, frame count and audio: " + "; ".join(f"{r['clip']}: {all(r['kept'].values())}" for r in results))
    return "\n".join(lines) + "\n"


def _plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for res in results:
        for key, curve in res["curves"].items():
            ax.plot(range(1, len(curve) + 1), curve, ("-" if key == "MF" else "--"), label=f"{Path(res['clip']).stem[:18]} {key}")
    ax.set_xlabel("frames")
    ax.set_ylabel("seconds")
    ax.set_title("IdentityMask: propagation (MF) vs per-frame (w/o MF)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "fig_8_13.png", dpi=110)


def container_check(n: int, tmp: Path) -> str:
    """``--container-check``: every MP4/MOV clip of the shared data, first ``n`` frames, masked with
    the payload inside the video (``embed=True``) and recovered from the video and the key alone; also
    the masked face, a wrong key's decoy and the keyless attack, each on frame 0 (largest face)."""
    from facedeid.identity.recognizers import DlibRecognizer
    from facedeid.media.payload import MP4_SUFFIXES, sidecar_path

    rec = DlibRecognizer()
    outputs = ("recovered", "masked", "wrong key", "attack, no key")
    lines = [f"# identity-mask with the payload inside the video: every clip, first {n} frames", "",
             "dlib distance to the original on frame 0 (largest face; τ 0.6) of: " + ", ".join(outputs) + ".", "",
             "| clip | size in → out | frames in → out | fps in → out | audio in → out | rotation in → out | sidecar | "
             "payload bytes | recovered | " + " | ".join(f"dlib {o}" for o in outputs) + " |",
             "|" + "---|" * (9 + len(outputs))]
    for clip in sorted(p for p in (data_root() / "videos").iterdir() if p.suffix.lower() in MP4_SUFFIXES):
        cut, masked, back = tmp / f"cc_src_{clip.name}", tmp / f"cc_emb_{clip.name}", tmp / f"cc_rec_{clip.name}"
        wrong, attack = tmp / f"cc_wrong_{clip.name}", tmp / f"cc_attack_{clip.name}"
        stream_video(clip, cut, lambda i, t, f: f, quality=14, max_frames=n)
        rep = mask_video(cut, masked, KEY, embed=True)
        how = recover_video(masked, back, KEY)["how"]
        recover_video(masked, wrong, WRONG)
        keyless_attack(masked, attack)
        a, b = probe(cut), probe(masked)
        first = _frames(cut, 1)[0]
        faces = detect(first, "centerface")
        dists = ["no face"] * len(outputs)
        if faces:
            face = [max(faces, key=lambda f: f.box.area)]
            e0 = rec.embed(first, face)
            dists = [f"{float(np.linalg.norm(e0 - rec.embed(_frames(p, 1)[0], face))):.3f}" for p in (back, masked, wrong, attack)]
        lines.append(f"| {clip.name} | {a.width}×{a.height} → {b.width}×{b.height} | {a.frames} → {b.frames} | "
                     f"{float(a.fps or 0):.3f} → {float(b.fps or 0):.3f} | {'/'.join(a.audio) or 'none'} → {'/'.join(b.audio) or 'none'} | "
                     f"{a.rotation} → {b.rotation} | {'yes' if sidecar_path(masked).exists() else 'none'} | "
                     f"{rep['payload'].get('bytes')} | {how} | " + " | ".join(dists) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--clips", nargs="*", default=CLIPS)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--container-check", action="store_true",
                    help="instead: every clip, first --frames frames, payload inside the video, recovered from it")
    args = ap.parse_args()
    OUT = Path(args.out)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "videos"
    tmp.mkdir(exist_ok=True)
    if args.container_check:
        (OUT / "container_check.md").write_text(container_check(args.frames, tmp))
        return
    recs = default_recognizers()
    results = []
    t0 = time.perf_counter()
    for i, name in enumerate(args.clips):
        print(f"{name} ...", flush=True)
        results.append(run_clip(name, args.frames, recs, tmp, exact=i == 0))
        (OUT / "results.json").write_text(json.dumps(results, indent=1, default=float))
    _plot(results)
    text = report(results, recs, args.frames) + f"\nTotal benchmark time: {time.perf_counter() - t0:.0f} s on this machine.\n"
    (OUT / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
