"""Locate and read the shared test data (../shared/data beside the repository, or $FACEDEID_DATA)."""
from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..faces.types import Box


def data_root() -> Path:
    """The shared data folder: $FACEDEID_DATA, else ``../shared/data`` beside the repository/CWD."""
    env = os.environ.get("FACEDEID_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" for p in [*here.parents, *Path.cwd().resolve().parents]]
    candidates += [Path.cwd() / ".." / "shared" / "data"]
    for c in candidates:
        if (c / "MANIFEST.md").is_file():
            return c.resolve()
    raise FileNotFoundError("shared data not found: set FACEDEID_DATA to the folder holding MANIFEST.md")


def lfw_images(root: Path | None = None) -> list[Path]:
    """Every LFW image present, sorted."""
    root = root or data_root()
    return sorted((root / "lfw" / "images").glob("*/*.jpg"))


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool


def lfw_pairs(root: Path | None = None, name: str = "pairs_fold1.txt") -> list[Pair]:
    """LFW View-2 pairs (matched lines ``name i j``, mismatched ``n1 i n2 j``)."""
    root = root or data_root()
    img = root / "lfw" / "images"

    def path(person: str, i: str) -> Path:
        return img / person / f"{person}_{int(i):04d}.jpg"

    pairs = []
    for line in (root / "lfw" / name).read_text().splitlines()[1:]:
        f = line.split()
        if len(f) == 3:
            pairs.append(Pair(path(f[0], f[1]), path(f[0], f[2]), True))
        elif len(f) == 4:
            pairs.append(Pair(path(f[0], f[1]), path(f[2], f[3]), False))
    return pairs


def fold1_people(root: Path | None = None) -> set[str]:
    """The LFW people of View-2 fold 1: held out from every model the project learns (the
    parametric face model is built from the other people), so that evaluation is on unseen faces."""
    out: set[str] = set()
    for p in lfw_pairs(root):
        out.add(p.a.parent.name)
        out.add(p.b.parent.name)
    return out


def identities(root: Path | None = None, dataset: str | None = None) -> list[tuple[Path, str]]:
    """(image path, identity) rows of identities.csv, optionally for one dataset."""
    root = root or data_root()
    with open(root / "identities.csv", newline="") as fh:
        rows = [(root / r["path"], r["identity"]) for r in csv.DictReader(fh) if dataset in (None, r["dataset"])]
    return rows


def pascal_ground_truth(root: Path | None = None) -> dict[Path, list[Box]]:
    """Ground-truth face boxes of the 9 dlib/PASCAL group photos (training.xml + testing.xml)."""
    root = root or data_root()
    folder = root / "group_photos" / "dlib_pascal"
    out: dict[Path, list[Box]] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(folder / xml).getroot().iter("image"):
            boxes = []
            for b in image.iter("box"):
                if b.get("ignore") == "1":
                    continue
                x, y, w, h = (float(b.get(k)) for k in ("left", "top", "width", "height"))
                boxes.append(Box(x, y, x + w, y + h))
            out[folder / Path(image.get("file")).name] = boxes
    return out


def group_photo_counts(root: Path | None = None) -> dict[Path, str]:
    """The listed (partly approximate) face count of every group photo, as written in the CSV."""
    root = root or data_root()
    with open(root / "group_photos" / "group_photos.csv", newline="") as fh:
        return {root / "group_photos" / r["file"]: r["faces"] for r in csv.DictReader(fh)}
