"""`facedeid evaluate`: compare a folder of originals with a folder of anonymized images.

Files are paired by relative path. For every original face (detected on the original) the
anonymized image is measured with the *original* landmarks (the strongest, best-aligned attacker):
identity distance and CSIM per recognizer, SDR (Eq. 3.2), PSNR/SSIM/MAE (whole image and face box),
and whether each detector still finds the face (face detection rate, FDR). With ``pairs`` (LFW
format, names mapped to ``Name/Name_NNNN.jpg``) verification runs with the first image original and
the second anonymized, next to the same figures on originals only.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bench.detection import match
from .errors import BadArguments, FaceDeidError
from .faces.detect import DEFAULT_DETECTOR, detect
from .faces.landmarks import landmarks68
from .faces.types import Face
from .identity.recognizers import Recognizer, cosine_similarity, distance
from .media.images import IMAGE_SUFFIXES, read_image
from .metrics.privacy import pair_verification, sdr
from .metrics.quality import mae, psnr, ssim

DEFAULT_DETECTORS = ("hog", "haar", "centerface")


def default_recognizers() -> list[Recognizer]:
    """dlib (the book's Face Recognition library) and MobileFaceNet (independent, evaluation only)."""
    from .identity.mobilefacenet import MobileFaceNetRecognizer
    from .identity.recognizers import DlibRecognizer

    return [DlibRecognizer(), MobileFaceNetRecognizer()]


@dataclass
class FaceRow:
    """Figures for one original face and its anonymized counterpart."""

    file: str
    face: int
    box: list[float]
    id_distance: dict[str, float] = field(default_factory=dict)
    csim: dict[str, float] = field(default_factory=dict)
    detected: dict[str, bool] = field(default_factory=dict)
    psnr_face: float = float("nan")
    ssim_face: float = float("nan")
    utility: dict[str, float] = field(default_factory=dict)


@dataclass
class FileRow:
    file: str
    faces: int
    psnr: float
    ssim: float
    mae: float
    error: str = ""


@dataclass
class Evaluation:
    files: list[FileRow]
    faces: list[FaceRow]
    summary: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary, "files": [asdict(f) for f in self.files], "faces": [asdict(f) for f in self.faces]},
                          indent=1, default=_jsonable)

    def to_csv(self) -> str:
        buf = io.StringIO()
        recs = sorted({k for f in self.faces for k in f.id_distance})
        dets = sorted({k for f in self.faces for k in f.detected})
        util = sorted({k for f in self.faces for k in f.utility})
        w = csv.writer(buf)
        w.writerow(["file", "face", *[f"id_distance_{r}" for r in recs], *[f"csim_{r}" for r in recs],
                    *[f"detected_{d}" for d in dets], "psnr_face", "ssim_face", *util])
        for f in self.faces:
            w.writerow([f.file, f.face, *[_r(f.id_distance.get(r)) for r in recs], *[_r(f.csim.get(r)) for r in recs],
                        *[int(f.detected.get(d, False)) for d in dets], _r(f.psnr_face), _r(f.ssim_face),
                        *[_r(f.utility.get(k)) for k in util]])
        return buf.getvalue()


def _r(x: float | None) -> str:
    return "" if x is None or not np.isfinite(x) else f"{x:.4f}"


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return str(x)


def paired_files(original: Path, anonymized: Path) -> list[str]:
    """Relative paths of images present in both folders."""
    def rel(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}

    common = sorted(rel(original) & rel(anonymized))
    if not common:
        raise BadArguments(f"no image is present under the same relative path in {original} and {anonymized}")
    return common


@functools.cache
def _classifiers() -> tuple[Any, Any]:
    from .metrics.utility import EmotionClassifier, GenderClassifier

    return EmotionClassifier(), GenderClassifier()


def face_utility(a: np.ndarray, b: np.ndarray, face: Face, found: Sequence[Face]) -> dict[str, float]:
    """Utility of one anonymized face (book Ch. 3.3.2; Tables 6.2, 7.1, 8.4).

    Landmarks on the anonymized image come from the detection matching the original face (or, when
    no detector finds it, from the predictor run in the original box): landmark distance (box, all,
    eyes, nose, mouth), head-pose error, mouth/eye openness change, and agreement of the emotion
    and gender classifiers.
    """
    from .metrics.utility import expression_change, expression_ratios, head_pose, landmark_distances, pose_error

    match_b = next((f for f in found if match([face.box], [f.box])[0] == 1), None)
    box_b = match_b.box if match_b is not None else face.box
    la, lb = landmarks68(a, face.box), landmarks68(b, box_b)
    out = {f"landmark_{k}": v for k, v in landmark_distances(la, lb, face.box, box_b).items()}
    out["pose_error"] = pose_error(head_pose(la, a.shape), head_pose(lb, b.shape))["mean"]
    change = expression_change(expression_ratios(la), expression_ratios(lb))
    out.update({f"expr_{k}": v for k, v in change.items() if k.endswith("_rel")})
    emo, gen = _classifiers()
    out["emotion_same"] = float(np.argmax(emo.predict(a, [face])[0]) == np.argmax(emo.predict(b, [face])[0]))
    out["gender_same"] = float((gen.predict(a, [face])[0] > 0.5) == (gen.predict(b, [face])[0] > 0.5))
    return out


def _box_crop(img: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box.clipped(img.shape[1], img.shape[0]).as_int()
    return img[y0:y1, x0:x1]


def evaluate_file(a: np.ndarray, b: np.ndarray, name: str, recognizers: Sequence[Recognizer], detectors: Sequence[str],
                  detector: str = DEFAULT_DETECTOR) -> tuple[FileRow, list[FaceRow]]:
    """Figures for one original/anonymized image pair."""
    if a.shape != b.shape:
        raise BadArguments(f"{name}: sizes differ ({a.shape[1]}×{a.shape[0]} vs {b.shape[1]}×{b.shape[0]})")
    faces = detect(a, detector)
    rows = [FaceRow(name, i, f.box.to_list()) for i, f in enumerate(faces)]
    for rec in recognizers:
        if not faces:
            break
        ea, eb = rec.embed(a, faces), rec.embed(b, faces)
        for row, d, c in zip(rows, distance(ea, eb, rec.metric), cosine_similarity(ea, eb)):
            row.id_distance[rec.name], row.csim[rec.name] = float(d), float(c)
    found_by: dict[str, list[Face]] = {}
    for det in detectors:
        found_by[det] = detect(b, det)
        for row, f in zip(rows, faces):
            row.detected[det] = match([f.box], [x.box for x in found_by[det]])[0] == 1
    found = found_by.get(detector) or detect(b, detector)
    for row, f in zip(rows, faces):
        row.utility = face_utility(a, b, f, found)
    for row, f in zip(rows, faces):
        ca, cb = _box_crop(a, f.box), _box_crop(b, f.box)
        if min(ca.shape[:2]) >= 7:
            row.psnr_face, row.ssim_face = psnr(ca, cb), ssim(ca, cb)
    return FileRow(name, len(faces), psnr(a, b), ssim(a, b), mae(a, b)), rows


def _finite_mean(values: list[float]) -> float:
    """Mean over finite values; ``inf`` when every value is +inf (identical images' PSNR)."""
    v = np.array([x for x in values if not np.isnan(x)], dtype=np.float64)
    if v.size and np.all(np.isposinf(v)):
        return float("inf")
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def summarize(files: list[FileRow], faces: list[FaceRow], recognizers: Sequence[Recognizer], detectors: Sequence[str]) -> dict[str, Any]:
    s: dict[str, Any] = {
        "images": len(files),
        "errors": sum(bool(f.error) for f in files),
        "faces": len(faces),
        "psnr": _finite_mean([f.psnr for f in files if not f.error]),
        "ssim": _finite_mean([f.ssim for f in files if not f.error]),
        "mae": _finite_mean([f.mae for f in files if not f.error]),
        "psnr_face": _finite_mean([f.psnr_face for f in faces]),
        "ssim_face": _finite_mean([f.ssim_face for f in faces]),
    }
    for rec in recognizers:
        d = np.array([f.id_distance[rec.name] for f in faces if rec.name in f.id_distance])
        s[f"id_distance_{rec.name}"] = float(d.mean()) if d.size else float("nan")
        s[f"csim_{rec.name}"] = _finite_mean([f.csim[rec.name] for f in faces if rec.name in f.csim])
        s[f"sdr_{rec.name}"] = sdr(d, rec.threshold)
    for det in detectors:
        s[f"fdr_{det}"] = float(np.mean([f.detected[det] for f in faces])) if faces else float("nan")
    for key in sorted({k for f in faces for k in f.utility}):
        s[key] = _finite_mean([f.utility[key] for f in faces if key in f.utility])
    return s


def pairs_from_file(path: Path) -> list[tuple[str, str, bool]]:
    """LFW-format pairs as relative paths (``Name/Name_NNNN.jpg``) with the same-person flag."""
    out = []
    for line in Path(path).read_text().splitlines()[1:]:
        f = line.split()
        if len(f) == 3:
            out.append((f"{f[0]}/{f[0]}_{int(f[1]):04d}.jpg", f"{f[0]}/{f[0]}_{int(f[2]):04d}.jpg", True))
        elif len(f) == 4:
            out.append((f"{f[0]}/{f[0]}_{int(f[1]):04d}.jpg", f"{f[2]}/{f[2]}_{int(f[3]):04d}.jpg", False))
    return out


def _pair_verification(pairs, original: Path, anonymized: Path, recognizers, detector: str) -> dict[str, Any]:
    """Verification with the first image original and the second anonymized (and originals only)."""
    from .bench.lfw_pairs import main_face

    cache: dict[Path, tuple[np.ndarray, Any]] = {}

    def load(p: Path):
        if p not in cache:
            img = read_image(p).rgb
            cache[p] = (img, main_face(img, detector))
        return cache[p]

    out: dict[str, Any] = {}
    usable = [(a, b, s) for a, b, s in pairs if (original / a).is_file() and (original / b).is_file() and (anonymized / b).is_file()]
    for rec in recognizers:
        ea, eb, ej, same = [], [], [], []
        for a, b, s in usable:
            ia, fa = load(original / a)
            ib, fb = load(original / b)
            jb, _ = load(anonymized / b)
            if fa is None or fb is None:
                continue
            ea.append(rec.embed(ia, [fa])[0])
            eb.append(rec.embed(ib, [fb])[0])
            ej.append(rec.embed(jb, [fb])[0])
            same.append(s)
        v_anon, v_orig = pair_verification(np.array(ea), np.array(eb), np.array(ej), np.array(same, bool), rec.metric, rec.threshold)
        out[rec.name] = {"anonymized": asdict(v_anon), "original": asdict(v_orig)}
    out["pairs_used"] = len(usable)
    return out


def _face_crops(a: np.ndarray, b: np.ndarray, rows: Sequence[FaceRow], size: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
    """Same-box crops of every face, resized to ``size``² (inputs of FID and LPIPS)."""
    import cv2

    from .faces.types import Box

    out = []
    for r in rows:
        box = Box(*r.box).expanded(0.1)
        ca, cb = _box_crop(a, box), _box_crop(b, box)
        if min(ca.shape[:2]) >= 8:
            out.append((cv2.resize(ca, (size, size), interpolation=cv2.INTER_AREA), cv2.resize(cb, (size, size), interpolation=cv2.INTER_AREA)))
    return out


def perceptual(crops: list[tuple[np.ndarray, np.ndarray]], fid_weights: str | None, lpips_weights: str | None,
               lpips_heads: str | None) -> dict[str, Any]:
    """FID and LPIPS over the face crops, or why they are not available (never a substitute)."""
    from .metrics import perceptual as pm

    a = [x for x, _ in crops]
    b = [y for _, y in crops]
    return {"fid": pm.fid(a, b, weights=fid_weights).to_dict() if len(crops) >= 2 or not pm.available(fid_weights) else
            {"name": "fid", "value": None, "available": False, "reason": "not available: fewer than 2 faces"},
            "lpips": pm.lpips(a, b, weights=lpips_weights, heads=lpips_heads).to_dict() if crops or not pm.available(lpips_weights) else
            {"name": "lpips", "value": None, "available": False, "reason": "not available: no face"}}


def evaluate(original: str | Path, anonymized: str | Path, pairs: str | Path | None = None,
             recognizers: Sequence[Recognizer] | None = None, detectors: Sequence[str] = DEFAULT_DETECTORS,
             detector: str = DEFAULT_DETECTOR, fid_weights: str | None = None, lpips_weights: str | None = None,
             lpips_heads: str | None = None) -> Evaluation:
    """Evaluate every image present in both folders (see module docstring)."""
    original, anonymized = Path(original), Path(anonymized)
    recognizers = list(recognizers) if recognizers is not None else default_recognizers()
    files: list[FileRow] = []
    faces: list[FaceRow] = []
    crops: list[tuple[np.ndarray, np.ndarray]] = []
    for name in paired_files(original, anonymized):
        try:
            a, b = read_image(original / name).rgb, read_image(anonymized / name).rgb
            frow, frows = evaluate_file(a, b, name, recognizers, detectors, detector)
        except FaceDeidError as exc:
            files.append(FileRow(name, 0, float("nan"), float("nan"), float("nan"), error=str(exc)))
            continue
        files.append(frow)
        faces.extend(frows)
        crops += _face_crops(a, b, frows)
    summary = summarize(files, faces, recognizers, detectors)
    summary.update(perceptual(crops, fid_weights, lpips_weights, lpips_heads))
    if pairs is not None:
        summary["verification"] = _pair_verification(pairs_from_file(Path(pairs)), original, anonymized, recognizers, detector)
    return Evaluation(files, faces, summary)
