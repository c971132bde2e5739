"""Benchmark report: CSV, Markdown, HTML, trade-off plots and a contact sheet."""
from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..media.images import write_atomic

COLUMNS = [
    ("method", "method"), ("recognizer", "recognizer"), ("id_dis", "Id-dis"), ("sdr", "SDR"), ("tar", "TAR@τ"),
    ("far", "FAR@τ"), ("tar_far1", "TAR@FAR1%"), ("tar_orig", "orig. TAR@τ"), ("rank1", "rank-1 (clean gallery)"),
    ("adaptive_rank1", "adaptive rank-1"), ("lbph_adaptive_rank1", "LBPH adaptive rank-1"), ("chance", "chance"),
    ("fdr_hog", "FDR hog"), ("fdr_haar", "FDR haar"), ("fdr_centerface", "FDR centerface"), ("psnr", "PSNR"), ("ssim", "SSIM"),
    ("landmark_all", "landmark dist. px"), ("pose_error", "pose err. °"), ("expr_mouth_open_rel", "mouth-open change"),
    ("emotion_same", "emotion kept"), ("gender_same", "gender kept"),
    ("s_per_face", "s/face"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if not np.isfinite(v) else f"{v:.3f}"
    return "–" if v is None else str(v)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    cols = [(k, t) for k, t in COLUMNS if any(k in r for r in rows)]
    lines = ["| " + " | ".join(t for _, t in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)


def _csv(rows: Sequence[dict[str, Any]]) -> bytes:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(samples: dict[str, list[tuple[np.ndarray, np.ndarray]]], size: int = 96) -> np.ndarray:
    """One row per method: the originals then (original | anonymized) thumbnails."""
    rows = []
    for _, pairs in samples.items():
        tiles = []
        for a, b in pairs:
            for im in (a, b):
                tiles.append(np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)))
            tiles.append(np.full((size, 6, 3), 255, np.uint8))
        if tiles:
            rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return np.full((size, size, 3), 255, np.uint8)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def _plots(out: Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for rec in sorted({r["recognizer"] for r in rows}):
        rr = [r for r in rows if r["recognizer"] == rec and r["method"] != "original"]
        if not rr:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, (x, y, xl, yl) in zip(axes, [("ssim", "sdr", "SSIM (utility)", "SDR (privacy)"), ("psnr", "id_dis", "PSNR dB", "identity distance")]):
            for r in rr:
                ax.scatter(r[x], r[y], s=30)
                ax.annotate(r["method"].split(":")[0] + ("" if ":" not in r["method"] else ":" + r["method"].split(":", 1)[1][:18]),
                            (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.grid(alpha=0.3)
        fig.suptitle(f"privacy–utility trade-off ({rec})")
        fig.tight_layout()
        name = f"tradeoff_{rec}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        write_atomic(out / name, buf.getvalue())
        names.append(name)
    return names


def write(out: Path, rows: Sequence[dict[str, Any]], samples: dict, meta: dict[str, Any]) -> None:
    out = Path(out)
    table = markdown_table(rows)
    plots = _plots(out, rows)
    write_atomic(out / "contact_sheet.png", _png(contact_sheet(samples)))
    write_atomic(out / "results.csv", _csv(rows))
    write_atomic(out / "results.json", json.dumps({"meta": meta, "rows": rows}, indent=1, default=float).encode())
    notes = (f"LFW fold 1: first {meta['pairs'] // 2} matched + {meta['pairs'] // 2} mismatched pairs, second image anonymized; "
             f"identification: {meta['identities']} LFW people{' of fold 1 (unseen by the face model)' if meta.get('held_out') else ''} (probe = first photo, gallery = next 4). "
             f"Detector for the originals: {meta['detector']}. Total {meta['seconds']:.0f} s. "
             "Recognizers measure the anonymized face with the original's landmarks (best-aligned attacker). "
             "MobileFaceNet is used by evaluation only. Book values are not reproduced here (no copy of the book's tables ships with the project).")
    md = f"# facedeid benchmark\n\n{notes}\n\n{table}\n\n" + "".join(f"![{p}]({p})\n\n" for p in plots) + "![contact sheet](contact_sheet.png)\n"
    write_atomic(out / "report.md", md.encode())
    html_rows = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
                        for i, line in enumerate(table.splitlines()) if i != 1)
    page = (f"<!doctype html><meta charset=utf-8><title>facedeid benchmark</title><style>body{{font-family:sans-serif}}"
            f"td{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}</style><h1>facedeid benchmark</h1><p>{html.escape(notes)}</p>"
            f"<table>{html_rows}</table>" + "".join(f'<p><img src="{p}"></p>' for p in plots) + '<p><img src="contact_sheet.png"></p>')
    write_atomic(out / "report.html", page.encode())
