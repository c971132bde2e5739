"""`make demo`: anonymize the embedded default input (scikit-image's astronaut photo)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

from .identity.recognizers import DlibRecognizer, distance
from .media.images import write_atomic
from .metrics.quality import psnr, ssim
from .pipeline import DEFAULT_METHOD, anonymize


def _png(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def side_by_side(original: np.ndarray, anonymized: np.ndarray, boxes: list) -> np.ndarray:
    """Original (with detected boxes outlined) | anonymized, with a 16-px white gutter."""
    left = Image.fromarray(original)
    draw = ImageDraw.Draw(left)
    for b in boxes:
        draw.rectangle(b, outline=(255, 40, 40), width=3)
    gutter = np.full((original.shape[0], 16, 3), 255, np.uint8)
    return np.concatenate([np.asarray(left), gutter, anonymized], axis=1)


def run_demo(out_dir: Path, method: str | None = None) -> dict[str, Path]:
    """Write the anonymized photo, a side-by-side picture and metrics JSON into ``out_dir``."""
    original = data.astronaut()
    res = anonymize(original, method or DEFAULT_METHOD)
    rec = DlibRecognizer()
    d = distance(rec.embed(original, res.faces), rec.embed(res.image, res.faces), rec.metric) if res.faces else np.array([])
    metrics = {
        "input": "skimage.data.astronaut() (512x512)",
        "method": res.report["method"],
        "faces": [f.to_dict() for f in res.faces],
        "identity_distance_dlib": [round(float(x), 4) for x in d],
        "deidentified_dlib": [bool(x > rec.threshold) for x in d],
        "threshold_dlib": rec.threshold,
        "psnr_db": round(psnr(original, res.image), 2),
        "ssim": round(ssim(original, res.image), 4),
        "randomness": res.report["randomness"],
    }
    out_dir = Path(out_dir)
    paths = {
        "anonymized": out_dir / "astronaut_anonymized.png",
        "side_by_side": out_dir / "side_by_side.png",
        "metrics": out_dir / "metrics.json",
    }
    write_atomic(paths["anonymized"], _png(res.image))
    write_atomic(paths["side_by_side"], _png(side_by_side(original, res.image, [f.box.to_list() for f in res.faces])))
    write_atomic(paths["metrics"], (json.dumps(metrics, indent=2) + "\n").encode())
    return paths
