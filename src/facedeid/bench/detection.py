"""Detection benchmark: face detection rate per backend on LFW and recall on the group photos."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..faces.detect import _overlaps, detect
from ..faces.types import Box
from ..media.images import read_image
from .datasets import group_photo_counts, lfw_images, pascal_ground_truth


@dataclass
class LfwDetection:
    backend: str
    images: int
    detected: int  # images with a face covering the image centre (the labelled person)
    any_face: int  # images with at least one face
    seconds: float

    @property
    def rate(self) -> float:
        return self.detected / max(self.images, 1)


def lfw_detection(backend: str, images: Sequence[Path]) -> LfwDetection:
    """Share of LFW images in which ``backend`` finds the centred (labelled) face."""
    hit = anyf = 0
    t0 = time.perf_counter()
    for p in images:
        img = read_image(p).rgb
        h, w = img.shape[:2]
        faces = detect(img, backend)
        anyf += bool(faces)
        hit += any(f.box.x0 <= w / 2 <= f.box.x1 and f.box.y0 <= h / 2 <= f.box.y1 for f in faces)
    return LfwDetection(backend, len(images), hit, anyf, time.perf_counter() - t0)


@dataclass
class GroupDetection:
    backend: str
    gt_faces: int
    found: int
    false_positives: int
    per_photo: dict[str, tuple[int, str]]  # other photos: (faces found, listed count)
    seconds: float

    @property
    def recall(self) -> float:
        return self.found / max(self.gt_faces, 1)


def match(gt: Sequence[Box], found: Sequence[Box], iou: float = 0.3) -> tuple[int, int]:
    """Greedy matching: (ground-truth faces found, detections matching no ground truth)."""
    free = list(found)
    hits = 0
    for g in gt:
        cand = [f for f in free if _overlaps(g, f, iou)]
        if cand:
            best = max(cand, key=g.iou)
            free.remove(best)
            hits += 1
    return hits, len(free)


def group_detection(backend: str) -> GroupDetection:
    """Recall and false positives on the 9 annotated PASCAL photos, plus counts on the others."""
    gt = pascal_ground_truth()
    t0 = time.perf_counter()
    found = fp = total = 0
    for path, boxes in gt.items():
        faces = detect(read_image(path).rgb, backend)
        h, f = match(boxes, [x.box for x in faces])
        found += h
        fp += f
        total += len(boxes)
    others = {}
    for path, listed in group_photo_counts().items():
        if path in gt:
            continue
        others[path.name] = (len(detect(read_image(path).rgb, backend)), listed)
    return GroupDetection(backend, total, found, fp, others, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="face detection rate per backend")
    ap.add_argument("--backends", default="hog,haar,centerface,union,cnn")
    ap.add_argument("--lfw-limit", type=int, default=0, help="use only the first N LFW images (0 = all)")
    args = ap.parse_args(argv)
    images = lfw_images()
    if args.lfw_limit:
        images = images[: args.lfw_limit]
    print("| backend | LFW centred face | LFW any face | s/img | PASCAL recall | PASCAL false pos. | group photos found/listed |")
    print("|---|---|---|---|---|---|---|")
    for b in args.backends.split(","):
        lf = lfw_detection(b, images)
        gr = group_detection(b)
        others = "; ".join(f"{k}: {v[0]}/{v[1]}" for k, v in gr.per_photo.items())
        print(f"| {b} | {lf.detected}/{lf.images} = {lf.rate:.4f} | {lf.any_face} | {lf.seconds / lf.images:.3f} "
              f"| {gr.found}/{gr.gt_faces} = {gr.recall:.3f} | {gr.false_positives} | {others} |", flush=True)


if __name__ == "__main__":
    main()
