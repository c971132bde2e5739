"""The k-Same family over sets of faces (book Ch. 3.1.2).

* ``ksame-pixel`` — k-Same-Pixel (Newton, Sweeney & Malin 2005): the pixel average of aligned faces.
* ``ksame-eigen`` — k-Same-Eigen (Newton et al. 2005): the average in an eigenface (PCA) space
  fitted on the set, reconstructed.
* ``ksame-select`` — k-Same-Select (Gross et al. 2005): k-Same inside groups of a utility label
  (gender from a CSV column, or expression from mouth openness), so that the attribute is kept.
* ``ksame-m`` — k-Same-M (Gross et al. 2006): shape (68 landmarks) and shape-normalised texture are
  averaged separately and the mean texture is rendered on the mean shape: no ghosting.

Every face of the set is put in a cluster of at least ``k`` *distinct people* and replaced by its
cluster's aggregate, computed in an aligned frame and pasted back into its own photo (warped to its
landmarks, colour-matched in Lab, blended with a feathered mask). People are told apart by identity
labels (CSV) and dlib matches between the set's faces (average-linkage distance < ``match``); all
faces of a person go to one cluster, so every released face stands for at least ``k`` people and a
recognizer that matches released faces to the originals re-identifies at most 1/k of the *people*
(Newton et al. 2005). The guarantee covers the face content (the aggregate); what the paste-back
keeps — hair, background, the face's position and its overall skin tone — is not covered.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol, Sequence

import cv2
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform
from scipy.spatial import Delaunay

from ..errors import BadArguments
from ..faces.align import align_matrix, crop_to_roi, transform_points
from ..faces.masks import composite, face_region
from ..faces.types import Face
from ..identity.recognizers import DlibRecognizer
from .base import Context, MethodOutput, RegionParams, SetMethod, register

# --------------------------------------------------------------------------- aligned frame
TEMPLATE_SIDE = 96  # the 5-point template (align.TEMPLATE_5) is scaled to this many pixels …
CROP = 192  # … and centred in a CROP×CROP frame large enough for the face region and its feather
PAD = (CROP - TEMPLATE_SIDE) / 2
FEATURE_SIDE = 48  # aligned faces are reduced to this size for the clustering distances
SPACES = ("pixels", "eigen", "dlib")
DLIB_KEY = "dlib"  # Face.extra key of a cached dlib embedding (reused, never recomputed)


def crop_matrix(face: Face) -> np.ndarray:
    """3×3 similarity from image pixels to the face's aligned CROP×CROP frame (Umeyama, Eq. 8.13–8.14)."""
    shift = np.array([[1.0, 0.0, PAD], [0.0, 1.0, PAD], [0.0, 0.0, 1.0]])
    return shift @ align_matrix(face, TEMPLATE_SIDE)


def aligned_crop(image: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
    """The face warped into the aligned frame (float32 RGB) and the matrix that did it."""
    m = crop_matrix(face)
    crop = cv2.warpAffine(image[..., :3], m[:2], (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return crop.astype(np.float32), m


def face_mask() -> np.ndarray:
    """Ellipse over brows-to-chin and ear-to-ear in the aligned frame (where clustering looks)."""
    mask = np.zeros((CROP, CROP), np.uint8)
    centre = (round(PAD + 0.5 * TEMPLATE_SIDE), round(PAD + 0.55 * TEMPLATE_SIDE))
    axes = (round(0.45 * TEMPLATE_SIDE), round(0.55 * TEMPLATE_SIDE))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    return mask.astype(bool)


@dataclass
class FaceSet:
    """Every face of the set in the aligned frame: ``image_index[i]`` is the photo face ``i`` is in."""

    images: Sequence[np.ndarray]
    faces: list[Face]
    image_index: np.ndarray
    crops: np.ndarray  # (n, CROP, CROP, 3) float32
    matrices: np.ndarray  # (n, 3, 3) image → aligned frame
    shapes: np.ndarray | None  # (n, 68, 2) landmarks in the aligned frame, when every face has them

    @classmethod
    def collect(cls, images: Sequence[np.ndarray], faces: Sequence[Sequence[Face]]) -> "FaceSet":
        flat = [(i, f) for i, fs in enumerate(faces) for f in fs]
        pairs = [aligned_crop(images[i], f) for i, f in flat]
        crops = np.stack([c for c, _ in pairs]) if pairs else np.zeros((0, CROP, CROP, 3), np.float32)
        mats = np.stack([m for _, m in pairs]) if pairs else np.zeros((0, 3, 3))
        has68 = bool(flat) and all(f.landmarks68 is not None for _, f in flat)
        shapes = np.stack([transform_points(m, f.landmarks68) for (_, f), m in zip(flat, mats)]) if has68 else None
        return cls(images, [f for _, f in flat], np.array([i for i, _ in flat], dtype=int), crops, mats, shapes)

    def __len__(self) -> int:
        return len(self.faces)


# --------------------------------------------------------------------------- people (identity-aware)
def _sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``x`` and of ``y``."""
    return np.maximum((x**2).sum(1)[:, None] + (y**2).sum(1)[None, :] - 2.0 * x @ y.T, 0.0)


def dlib_embeddings(fs: FaceSet) -> np.ndarray:
    """dlib 128-D embeddings of the set's faces, reusing ``face.extra['dlib']`` where present."""
    rec = DlibRecognizer()
    out = np.zeros((len(fs), rec.dim), np.float32)
    todo: dict[int, list[int]] = {}
    for i, f in enumerate(fs.faces):
        cached = f.extra.get(DLIB_KEY)
        if cached is not None:
            out[i] = cached
        else:
            todo.setdefault(int(fs.image_index[i]), []).append(i)
    for img, idx in todo.items():
        out[idx] = rec.embed(fs.images[img], [fs.faces[i] for i in idx])
    return out


def people(n: int, labels: Sequence[str | None], embeddings: np.ndarray | None, threshold: float) -> np.ndarray:
    """Person id of each face. Faces with the same label are one person; on top, faces whose
    dlib embeddings are, on average between two groups, closer than ``threshold`` are joined
    (average-linkage clustering: chains of single near matches do not merge strangers).
    """
    same = np.zeros((n, n), bool)
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        if lab:
            by_label.setdefault(lab, []).append(i)
    for idx in by_label.values():
        same[np.ix_(idx, idx)] = True
    if embeddings is not None and n > 1:
        e = embeddings.astype(np.float64)
        d = np.where(same, 0.0, np.sqrt(_sqdist(e, e)))
        np.fill_diagonal(d, 0.0)
        groups = fcluster(linkage(squareform(d, checks=False), "average"), t=threshold, criterion="distance")
        same |= groups[:, None] == groups[None, :]
    return connected_components(same, directed=False)[1] if n else np.zeros(0, int)


# --------------------------------------------------------------------------- k-Same clustering
def greedy_partition(points: np.ndarray, k: int) -> list[np.ndarray]:
    """Partition rows of ``points`` into clusters of ≥ k (k-Same, Newton et al. 2005, Fig. 3).

    Repeatedly the remaining point farthest from the remaining centroid (MDAV's choice, so that
    outliers do not end up in the last cluster) is taken with its k−1 nearest remaining points;
    the last < k points each join the cluster with the nearest centroid. Deterministic.
    """
    n = len(points)
    if n < k:
        raise ValueError(f"{n} points cannot form a cluster of {k}")
    remaining = np.arange(n)
    clusters: list[np.ndarray] = []
    while len(remaining) >= k:
        pts = points[remaining]
        seed = int(np.argmax(_sqdist(pts, pts.mean(0, keepdims=True))[:, 0]))
        near = np.argsort(_sqdist(pts, pts[seed : seed + 1])[:, 0], kind="stable")[:k]
        clusters.append(remaining[near])
        remaining = np.delete(remaining, near)
    if len(remaining):
        centroids = np.stack([points[c].mean(0) for c in clusters])
        nearest = np.argmin(_sqdist(points[remaining], centroids), axis=1)
        for i, c in zip(remaining, nearest):
            clusters[c] = np.append(clusters[c], i)
    return clusters


def k_same_clusters(features: np.ndarray, persons: np.ndarray, k: int) -> list[np.ndarray]:
    """Clusters of face indices, each with ≥ k distinct persons; a person's faces share one cluster.

    Persons are clustered by the centroid of their faces' features (:func:`greedy_partition`).
    Raises :class:`BadArguments` when there are fewer than k distinct people.
    """
    ids, inv = np.unique(persons, return_inverse=True)
    if len(ids) < k:
        raise BadArguments(
            f"k-Same needs at least k = {k} distinct people; the set holds {len(ids)} ({len(persons)} face(s))"
        )
    centroids = np.stack([features[inv == j].mean(0) for j in range(len(ids))])
    return [np.flatnonzero(np.isin(inv, g)) for g in greedy_partition(centroids, k)]


def person_weights(persons: np.ndarray) -> np.ndarray:
    """Averaging weights giving every person of a cluster the same total weight (sum 1)."""
    _, inv, counts = np.unique(persons, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inv] * len(counts))


# --------------------------------------------------------------------------- feature spaces
@dataclass(frozen=True)
class Eigenspace:
    """PCA basis fitted on a set (eigenfaces, Turk & Pentland; k-Same-Eigen, Ch. 3.1.2)."""

    mean: np.ndarray
    basis: np.ndarray  # (m, d) orthonormal rows

    @classmethod
    def fit(cls, x: np.ndarray, variance: float) -> "Eigenspace":
        """Keep the fewest components that explain ``variance`` of the set's variance."""
        x = x.reshape(len(x), -1).astype(np.float64)
        mean = x.mean(0)
        xc = x - mean
        lam, u = np.linalg.eigh(xc @ xc.T)  # n×n Gram matrix: cheap when n ≪ pixels (Turk & Pentland)
        lam, u = lam[::-1], u[:, ::-1]
        keep = lam > max(float(lam[0]), 0.0) * 1e-10
        lam, u = lam[keep], u[:, keep]
        energy = np.cumsum(lam) / max(float(lam.sum()), 1e-12)
        m = min(int(np.searchsorted(energy, variance - 1e-9)) + 1, len(lam))
        basis = (u[:, :m].T @ xc) / np.sqrt(lam[:m])[:, None]
        return cls(mean, basis)

    def project(self, x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1) - self.mean) @ self.basis.T

    def reconstruct(self, coef: np.ndarray) -> np.ndarray:
        return self.mean + coef @ self.basis


def pixel_features(reps: np.ndarray) -> np.ndarray:
    """Aligned faces reduced to FEATURE_SIDE² inside the face ellipse, one row per face."""
    mask = cv2.resize(face_mask().astype(np.uint8), (FEATURE_SIDE, FEATURE_SIDE), interpolation=cv2.INTER_NEAREST) > 0
    small = [cv2.resize(r, (FEATURE_SIDE, FEATURE_SIDE), interpolation=cv2.INTER_AREA)[mask] for r in reps]
    return np.stack([s.ravel() for s in small]).astype(np.float64) if small else np.zeros((0, 1))


# --------------------------------------------------------------------------- paste-back
def match_colour_lab(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give ``src`` the per-channel mean and standard deviation of ``ref`` on ``mask``, in CIE Lab
    (Reinhard et al. 2001 colour transfer). Float RGB 0..255 in and out."""
    if not mask.any():
        return src
    s = cv2.cvtColor(np.clip(src, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    r = cv2.cvtColor(ref[..., :3].astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    ms, ss = s[mask].mean(0), s[mask].std(0)
    mr, sr = r[mask].mean(0), r[mask].std(0)
    gain = np.clip(sr / np.maximum(ss, 1e-3), 0.25, 4.0)
    out = ((s - ms) * gain + mr).astype(np.float32)
    return np.clip(cv2.cvtColor(out, cv2.COLOR_Lab2RGB) * 255.0, 0, 255)


def paste_back(out: np.ndarray, original: np.ndarray, face: Face, crop: np.ndarray, matrix: np.ndarray,
               p: RegionParams, colour: bool) -> None:
    """Warp an aligned ``crop`` onto ``face`` in ``out`` (in place): inverse similarity, colour
    matching to the original face region, feathered blending (masks.composite)."""
    region = face_region(face, original.shape, p.region, p.margin, p.feather)
    roi = crop_to_roi(crop, matrix, region.roi)
    if colour:
        roi = match_colour_lab(roi, original[region.slices], region.core)
    composite(out, roi, region)


# --------------------------------------------------------------------------- labels and expression
def _csv_key(row: dict[str, str]) -> str:
    for col in ("path", "file", "filename", "image", "name"):
        if row.get(col):
            return PurePosixPath(row[col].replace("\\", "/").lstrip("./")).as_posix()
    raise BadArguments("labels CSV: needs a path/file column naming the images")


def read_labels(path: str, names: Sequence[str], columns: Sequence[str]) -> dict[str, list[str | None]]:
    """Per image, the values of ``columns`` in a CSV whose path column names the images.

    A CSV path matches an image when it is a trailing part of the image's path (``images/A/a.jpg``
    matches ``…/lfw/images/A/a.jpg``), or when only one row has the image's file name.
    """
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BadArguments(f"labels CSV {path}: {exc.strerror or exc}") from None
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing or not rows:
        raise BadArguments(f"labels CSV {path}: missing column(s) {', '.join(missing) or '(empty file)'}")
    by_base: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for row in rows:
        key = _csv_key(row)
        by_base.setdefault(PurePosixPath(key).name, []).append((key, row))
    out: dict[str, list[str | None]] = {c: [] for c in columns}
    for name in names:
        posix = Path(name).as_posix()
        cands = by_base.get(PurePosixPath(posix).name, [])
        hits = [r for k, r in cands if posix == k or posix.endswith("/" + k)] or (cands[:1] if len(cands) == 1 else [])
        for c in columns:
            out[c].append((hits[0][c] or None) if hits else None)
    return out


def mouth_openness(landmarks68: np.ndarray) -> float:
    """Inner-lip gap over inner mouth width (iBUG points 61–67 / 60–64): about 0 when closed."""
    p = landmarks68
    gap = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    return float(gap / max(np.linalg.norm(p[60] - p[64]), 1e-6))


# --------------------------------------------------------------------------- piecewise-affine warp
def _anchors() -> np.ndarray:
    e = CROP - 1.0
    return np.array([[0, 0], [e / 2, 0], [e, 0], [e, e / 2], [e, e], [e / 2, e], [0, e], [0, e / 2]])


def model_points(shape68: np.ndarray) -> np.ndarray:
    """Shape points of k-Same-M: the 60 outer landmarks (inner lips dropped: they fold when the mouth
    is closed) and 8 fixed anchors on the frame's border, so the warp covers the whole frame."""
    return np.concatenate([shape68[:60], _anchors()])


def piecewise_affine(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Warp ``image`` so that its points ``src`` land on ``dst``: one affine map per triangle of a
    triangulation of the points (shape normalisation of active appearance models, Gross et al. 2006)."""
    h, w = image.shape[:2]
    index = np.full((h, w), -1, np.int32)
    for t, tri in enumerate(triangles):
        cv2.fillConvexPoly(index, np.round(dst[tri] * 16).astype(np.int32), int(t), lineType=cv2.LINE_8, shift=4)
    a = np.concatenate([dst[triangles], np.ones((len(triangles), 3, 1))], axis=2)  # (T, 3, 3)
    maps = np.linalg.pinv(a) @ src[triangles]  # (T, 3, 2): [x, y, 1] @ maps[t] = source point
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    m = maps[np.maximum(index, 0)]
    mx = xs * m[..., 0, 0] + ys * m[..., 1, 0] + m[..., 2, 0]
    my = xs * m[..., 0, 1] + ys * m[..., 1, 1] + m[..., 2, 1]
    outside = index < 0
    mx[outside], my[outside] = xs[outside], ys[outside]
    return cv2.remap(image, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# --------------------------------------------------------------------------- aggregation models
class SetModel(Protocol):
    """What a k-Same variant averages. ``reps`` (n, CROP, CROP, 3): the faces as the variant sees them
    (clustering features come from them); ``aggregate`` returns one aligned crop per cluster member."""

    reps: np.ndarray

    def aggregate(self, members: np.ndarray, weights: np.ndarray) -> list[np.ndarray]: ...


class PixelModel:
    """k-Same-Pixel (Ch. 3.1.2): the (person-weighted) pixel average of the aligned faces."""

    def __init__(self, fs: FaceSet) -> None:
        self.reps = fs.crops

    def aggregate(self, members: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
        mean = np.tensordot(weights, self.reps[members], axes=1).astype(np.float32)
        return [mean] * len(members)


class EigenModel:
    """k-Same-Eigen (Ch. 3.1.2): average the eigenface coefficients, reconstruct."""

    def __init__(self, fs: FaceSet, variance: float) -> None:
        self.reps = fs.crops
        self.space = Eigenspace.fit(fs.crops, variance)
        self.coef = self.space.project(fs.crops)

    def aggregate(self, members: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
        flat = self.space.reconstruct(weights @ self.coef[members])
        return [flat.reshape(CROP, CROP, 3).astype(np.float32)] * len(members)


class ShapeTextureModel:
    """k-Same-M (Ch. 3.1.2, Gross et al. 2006): shape and shape-normalised texture averaged apart.

    Every face is warped to the set's mean shape (piecewise affine over a Delaunay triangulation);
    a cluster's mean texture is rendered on the cluster's mean shape (``own_shape``: on each
    member's own shape, which keeps face geometry and expression but does not anonymize them).
    """

    def __init__(self, fs: FaceSet, own_shape: bool) -> None:
        if fs.shapes is None:
            raise BadArguments("k-Same-M needs the 68 landmarks of every face")
        self.points = np.stack([model_points(s) for s in fs.shapes])
        self.reference = self.points.mean(0)
        self.triangles = Delaunay(self.reference).simplices
        self.reps = np.stack([piecewise_affine(c, p, self.reference, self.triangles) for c, p in zip(fs.crops, self.points)])
        self.own_shape = own_shape

    def aggregate(self, members: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
        texture = np.tensordot(weights, self.reps[members], axes=1).astype(np.float32)
        if self.own_shape:
            return [piecewise_affine(texture, self.reference, self.points[i], self.triangles) for i in members]
        shape = np.tensordot(weights, self.points[members], axes=1)
        return [piecewise_affine(texture, self.reference, shape, self.triangles)] * len(members)


def build_model(kind: str, fs: FaceSet, params: Any) -> SetModel:
    if kind == "pixel":
        return PixelModel(fs)
    if kind == "eigen":
        return EigenModel(fs, getattr(params, "variance", 0.95))
    if kind == "m":
        return ShapeTextureModel(fs, getattr(params, "shape", "mean") == "own")
    raise BadArguments(f"unknown k-Same model {kind!r} (known: pixel, eigen, m)")


# --------------------------------------------------------------------------- the methods
@dataclass(frozen=True)
class KSameParams(RegionParams):
    """Parameters shared by the k-Same family.

    The face region defaults to the hull of the 68 landmarks (with the forehead), so that hair and
    background stay the photo's own. ``k``: minimum number of distinct people per cluster. ``space``: where clustering distances are
    measured (``pixels`` of the aligned faces, ``eigen``: PCA of them, ``dlib``: 128-D embeddings).
    ``identities``: ``dlib`` merges faces of the set closer than ``match`` into one person, ``none``
    treats every face as a different person. ``labels``: optional CSV (path column + ``id_column``)
    naming who is who. ``colour``: match the aggregate's Lab mean/std to each original face.
    """

    region: str = "hull"
    margin: float = 0.05
    k: int = 10
    space: str = "pixels"
    identities: str = "dlib"
    match: float = 0.6
    labels: str = ""
    id_column: str = "identity"
    colour: bool = True

    def validate(self) -> None:
        if self.k < 2:
            raise ValueError("k must be at least 2")
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {', '.join(SPACES)}")
        if self.identities not in ("dlib", "none"):
            raise ValueError("identities must be dlib or none")
        if self.match <= 0:
            raise ValueError("match must be positive")


class KSame(SetMethod):
    """The k-Same template (Ch. 3.1.2): people → clusters of ≥ k → aggregates → paste-back."""

    model_kind: ClassVar[str] = "pixel"
    needs_68: ClassVar[bool] = False
    accepts_names: ClassVar[bool] = True  # apply_set takes image names (for the labels CSV)

    def apply_set(self, images: Sequence[np.ndarray], faces: Sequence[Sequence[Face]], ctx: Context,
                  names: Sequence[str] | None = None) -> list[MethodOutput]:
        p: KSameParams = self.params  # type: ignore[assignment]
        fs = FaceSet.collect(images, faces)
        if not len(fs):
            raise BadArguments(f"{self.name}: no face in the set")
        labels = self._labels(names, len(images))
        embeddings = dlib_embeddings(fs) if p.identities == "dlib" or p.space == "dlib" else None
        id_labels = self._per_face(fs, labels.get(p.id_column) if p.id_column else None)
        persons = people(len(fs), id_labels, embeddings if p.identities == "dlib" else None, p.match)
        model = build_model(self.model_name(), fs, p)
        features = self._features(model, embeddings)
        groups, group_report = self.groups(fs, persons, labels)
        clusters = [g[c] for g in groups for c in k_same_clusters(features[g], persons[g], p.k)]
        outs = [np.array(img, copy=True) for img in images]
        face_cluster = np.zeros(len(fs), int)
        for c, members in enumerate(clusters):
            face_cluster[members] = c
            crops = model.aggregate(members, person_weights(persons[members]))
            for i, crop in zip(members, crops):
                img = int(fs.image_index[i])
                paste_back(outs[img], images[img], fs.faces[i], crop, fs.matrices[i], p, p.colour)
        ctx.report["ksame"] = self._report(clusters, persons, group_report)
        return [MethodOutput(o, {"clusters": face_cluster[fs.image_index == i].tolist()}) for i, o in enumerate(outs)]

    # ----------------------------------------------------------------- steps
    def model_name(self) -> str:
        """Which aggregation model this variant uses (see :func:`build_model`)."""
        return self.model_kind

    def _labels(self, names: Sequence[str] | None, n_images: int) -> dict[str, list[str | None]]:
        p: KSameParams = self.params  # type: ignore[assignment]
        columns = self.label_columns()
        if not p.labels or not columns:
            return {}
        if names is None or len(names) != n_images:
            raise BadArguments(f"{self.name}: labels={p.labels} needs the image names (one per image)")
        return read_labels(p.labels, names, columns)

    def label_columns(self) -> list[str]:
        return [c for c in (self.params.id_column,) if c]  # type: ignore[attr-defined]

    @staticmethod
    def _per_face(fs: FaceSet, per_image: list[str | None] | None) -> list[str | None]:
        """Image-level labels for the faces: a label names the person of a one-face image only."""
        if per_image is None:
            return [None] * len(fs)
        counts = Counter(fs.image_index.tolist())
        return [per_image[i] if counts[i] == 1 else None for i in fs.image_index.tolist()]

    def _features(self, model: SetModel, embeddings: np.ndarray | None) -> np.ndarray:
        space = self.params.space  # type: ignore[attr-defined]
        if space == "dlib":
            assert embeddings is not None
            return embeddings.astype(np.float64)
        x = pixel_features(model.reps)
        return Eigenspace.fit(x, 0.95).project(x) if space == "eigen" and len(x) > 1 else x

    def groups(self, fs: FaceSet, persons: np.ndarray, labels: dict[str, list[str | None]]) -> tuple[list[np.ndarray], dict[str, Any]]:
        """Face-index groups clustered separately (one group; k-Same-Select overrides)."""
        return [np.arange(len(fs))], {}

    def _report(self, clusters: list[np.ndarray], persons: np.ndarray, groups: dict[str, Any]) -> dict[str, Any]:
        p: KSameParams = self.params  # type: ignore[assignment]
        how = " + ".join(filter(None, [f"labels {p.labels}" if p.labels else "", f"dlib average-linkage distance < {p.match}" if p.identities == "dlib" else ""])) or "every face a different person"
        report = {
            "k": p.k,
            "faces": int(len(persons)),
            "people": int(len(np.unique(persons))),
            "clusters": [c.tolist() for c in clusters],
            "people_per_cluster": [int(len(np.unique(persons[c]))) for c in clusters],
            "identities": how,
            "space": p.space,
            "guarantee": (
                f"each released face is the aggregate of ≥ {p.k} distinct people ({how}); every person is in "
                f"one cluster, so matching released faces to the originals re-identifies at most 1/{p.k} of the people"
            ),
        }
        report.update(groups)
        return report


@register
class KSamePixel(KSame):
    name: ClassVar[str] = "ksame-pixel"
    reference: ClassVar[str] = "Ch. 3.1.2 (k-Same-Pixel, Newton, Sweeney & Malin 2005)"
    summary: ClassVar[str] = "set of faces → clusters of ≥ k people → pixel average of the aligned faces"
    Params = KSameParams


@register
class KSameEigen(KSame):
    name: ClassVar[str] = "ksame-eigen"
    reference: ClassVar[str] = "Ch. 3.1.2 (k-Same-Eigen, Newton, Sweeney & Malin 2005)"
    summary: ClassVar[str] = "k-Same with averages in an eigenface (PCA) space fitted on the set, reconstructed"
    model_kind: ClassVar[str] = "eigen"

    @dataclass(frozen=True)
    class Params(KSameParams):
        space: str = "eigen"
        variance: float = 0.95  # share of the set's variance the eigenfaces keep

        def validate(self) -> None:
            super().validate()
            if not 0 < self.variance <= 1:
                raise ValueError("variance must be in (0, 1]")


@register
class KSameSelect(KSame):
    name: ClassVar[str] = "ksame-select"
    reference: ClassVar[str] = "Ch. 3.1.2 (k-Same-Select, Gross, Airoldi, Malin & Sweeney 2005)"
    summary: ClassVar[str] = "k-Same inside groups of a utility label (CSV column, or expression) so it is kept"
    needs_68: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Params(KSameParams):
        column: str = ""  # utility label column of the labels CSV (e.g. gender); empty: expression
        mouth_open: float = 0.15  # expression: mouth open when inner-lip gap / mouth width exceeds this
        model: str = "pixel"  # aggregate inside each group: pixel, eigen or m
        variance: float = 0.95
        shape: str = "mean"

        def validate(self) -> None:
            super().validate()
            if self.column and not self.labels:
                raise ValueError("column needs labels=path.csv")
            if self.model not in ("pixel", "eigen", "m"):
                raise ValueError("model must be pixel, eigen or m")

    def model_name(self) -> str:
        return self.params.model  # type: ignore[attr-defined]

    def label_columns(self) -> list[str]:
        p = self.params
        return [c for c in (p.id_column, p.column) if c]  # type: ignore[attr-defined]

    def utility(self, fs: FaceSet, labels: dict[str, list[str | None]]) -> list[str]:
        """Utility label of each face: the CSV column, or ``mouth-open`` / ``mouth-closed``."""
        p = self.params
        if p.column:  # type: ignore[attr-defined]
            return [lab or "unlabelled" for lab in self._per_face(fs, labels[p.column])]  # type: ignore[attr-defined]
        if fs.shapes is None:
            raise BadArguments("ksame-select by expression needs the 68 landmarks of every face")
        return ["mouth-open" if mouth_openness(s) > p.mouth_open else "mouth-closed" for s in fs.shapes]  # type: ignore[attr-defined]

    def groups(self, fs: FaceSet, persons: np.ndarray, labels: dict[str, list[str | None]]) -> tuple[list[np.ndarray], dict[str, Any]]:
        """One group per utility value (a person takes their faces' majority value). Groups with
        fewer than k people are pooled; a pool still under k joins the largest group."""
        k = self.params.k  # type: ignore[attr-defined]
        face_util = self.utility(fs, labels)
        person_util = {q: Counter(u for u, pp in zip(face_util, persons) if pp == q).most_common(1)[0][0] for q in np.unique(persons)}
        members: dict[str, list[int]] = {}
        for q, u in sorted(person_util.items(), key=lambda kv: str(kv[1])):
            members.setdefault(u, []).append(int(q))
        kept = {u: qs for u, qs in members.items() if len(qs) >= k}
        pooled = [q for u, qs in members.items() if len(qs) < k for q in qs]
        merged = sorted(u for u, qs in members.items() if len(qs) < k)
        if pooled and (len(pooled) >= k or not kept):
            kept["mixed: " + ", ".join(merged)] = pooled
        elif pooled:
            largest = max(kept, key=lambda u: len(kept[u]))
            kept[largest] = kept[largest] + pooled
        groups = [np.flatnonzero(np.isin(persons, qs)) for qs in kept.values()]
        return groups, {"groups": {u: len(qs) for u, qs in kept.items()}, "attribute_not_kept": merged}


@register
class KSameM(KSame):
    name: ClassVar[str] = "ksame-m"
    reference: ClassVar[str] = "Ch. 3.1.2 (k-Same-M, model-based, Gross, Sweeney, de la Torre & Baker 2006)"
    summary: ClassVar[str] = "k-Same on shape (68 landmarks) and shape-normalised texture averaged apart: no ghosting"
    model_kind: ClassVar[str] = "m"
    needs_68: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Params(KSameParams):
        shape: str = "mean"  # mean: the cluster's mean shape (k-anonymous); own: each face's own shape

        def validate(self) -> None:
            super().validate()
            if self.shape not in ("mean", "own"):
                raise ValueError("shape must be mean or own")
