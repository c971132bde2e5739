"""dlib's face recognition ResNet in PyTorch, loaded from dlib's own model file, with dlib's face chips.

``load_dlib_resnet`` reads ``dlib_face_recognition_resnet_model_v1.dat`` (PyPI ``face-recognition-models``)
with :mod:`facedeid.identity.dlib_serialize` and builds the same network: a 7×7/2 stem, a 3×3/2 max pool,
14 residual blocks and a 256→128 linear layer. Each ``affine_`` layer (dlib's frozen batch norm) is folded
into the convolution before it. A "down" block adds a 2×2/2 average-pooled skip path to its strided main
path; when their sizes differ, dlib zero-extends the smaller tensor (missing channels and trailing rows and
columns), and so does this port.

``face_chips`` reproduces dlib's chip extraction (``get_face_chip_details`` + ``extract_image_chips``):
the similarity fit to dlib's 5-point template, the one crop shared by all the chips of an image, dlib's
2:1 image pyramid for faces much larger than the chip, bilinear sampling truncated to uint8 and black
outside the image. Its chips equal dlib's pixel for pixel on every face tested. ``face_chips_torch`` does
the same with differentiable operations (a float pyramid and ``grid_sample``), so gradients flow from the
descriptor back to the image pixels (the landmarks are taken as constants).
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..faces.types import Face
from ..models import dlib_model_path
from .dlib_serialize import DlibFormatError, DnnFile, Layer, alias_view, read_dnn

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's 5-point face template (get_face_chip_details), in the order of shape_predictor_5_face_landmarks.
_TEMPLATE5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
_PYRAMID_TAPS = (1, 4, 6, 4, 1)

Rect = tuple[float, float, float, float]  # dlib (d)rectangle: left, top, right, bottom (inclusive)


# ----------------------------------------------------------------------------------------------------------
# The network


def _add_zero_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev_``: the sum over the larger shape, each input zero-extended at the far end."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def extend(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return extend(a) + extend(b)


class ResidualBlock(nn.Module):
    """``relu(add_prev(conv2(relu(conv1(x))), skip(x)))``; in down blocks ``skip`` is a 2×2/2 average pool."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, skip_pool: nn.AvgPool2d | None) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.skip_pool = skip_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = x if self.skip_pool is None else self.skip_pool(x)
        return F.relu(_add_zero_extended(y, skip))


class DlibResNet(nn.Module):
    """dlib's ``anet_type``. Input: RGB chips (N, 3, 150, 150), float pixel values in [0, 255]."""

    channel_means: torch.Tensor

    def __init__(
        self,
        stem: nn.Conv2d,
        stem_pool: nn.MaxPool2d,
        blocks: Sequence[ResidualBlock],
        fc: nn.Linear,
        channel_means: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.stem = stem
        self.stem_pool = stem_pool
        self.blocks = nn.Sequential(*blocks)
        self.fc = fc
        self.register_buffer("channel_means", torch.tensor(channel_means, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips - self.channel_means) / 256.0  # input_rgb_image_sized
        x = self.stem_pool(F.relu(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


class _LayerStream:
    """The file's layers, input first, consumed in architecture order with kind checks."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)
        self.index = 0

    def peek(self) -> str:
        return self.layers[self.index].kind if self.index < len(self.layers) else ""

    def take(self, kind: str) -> Layer:
        if self.peek() != kind:
            raise DlibFormatError(f"layer {self.index}: expected {kind}, found {self.peek() or 'the end'}")
        self.index += 1
        return self.layers[self.index - 1]


def _conv_affine(con: Layer, affine: Layer) -> nn.Conv2d:
    """A ``con_`` layer with the ``affine_`` layer after it folded into its weights and bias."""
    f = con.fields
    shape = f["filters"]
    weight = alias_view(f["params"], shape, 0)
    bias = alias_view(f["params"], f["biases"], weight.size).reshape(-1)
    channels = shape[0]
    gamma = alias_view(affine.fields["params"], affine.fields["gamma"], 0).reshape(-1)
    beta = alias_view(affine.fields["params"], affine.fields["beta"], channels).reshape(-1)
    conv = nn.Conv2d(
        shape[1], channels, (f["nr"], f["nc"]), (f["stride_y"], f["stride_x"]), (f["padding_y"], f["padding_x"])
    )
    conv.weight = nn.Parameter(torch.from_numpy(weight * gamma[:, None, None, None]))
    conv.bias = nn.Parameter(torch.from_numpy(bias * gamma + beta))
    return conv


def _pool_args(layer: Layer) -> tuple[tuple[int, int], tuple[int, int]]:
    f = layer.fields
    if f["padding_y"] or f["padding_x"]:
        raise DlibFormatError(f"{layer.kind} with padding is not supported")
    return (f["nr"], f["nc"]), (f["stride_y"], f["stride_x"])


def _take_conv_affine(stream: _LayerStream) -> nn.Conv2d:
    return _conv_affine(stream.take("con_4"), stream.take("affine_"))


def _take_block(stream: _LayerStream) -> ResidualBlock:
    """tag1, con, affine, relu, con, affine, [tag2, skip1, avg_pool], add_prev, relu."""
    stream.take("tag")
    conv1 = _take_conv_affine(stream)
    stream.take("relu_")
    conv2 = _take_conv_affine(stream)
    skip_pool = None
    if stream.peek() == "tag":
        stream.take("tag")
        stream.take("tag")
        skip_pool = nn.AvgPool2d(*_pool_args(stream.take("avg_pool_2")))
    stream.take("add_prev_")
    stream.take("relu_")
    return ResidualBlock(conv1, conv2, skip_pool)


def _take_fc(stream: _LayerStream) -> nn.Linear:
    f = stream.take("fc_2").fields
    if f["biases"] != (0, 0, 0, 0):
        raise DlibFormatError("fc_ with a bias is not supported")
    weight = alias_view(f["params"], f["weights"], 0).reshape(f["num_inputs"], f["num_outputs"])
    fc = nn.Linear(f["num_inputs"], f["num_outputs"], bias=False)
    fc.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(weight.T)))  # dlib computes y = x·W
    return fc


def build_dlib_resnet(dnn: DnnFile) -> DlibResNet:
    """Turn the layers of dlib's face recognition model file into a :class:`DlibResNet`."""
    stream = _LayerStream(dnn.layers)
    stem = _take_conv_affine(stream)
    stream.take("relu_")
    stem_pool = nn.MaxPool2d(*_pool_args(stream.take("max_pool_2")))
    blocks = []
    while stream.peek() == "tag":
        blocks.append(_take_block(stream))
    global_pool = stream.take("avg_pool_2").fields
    if (global_pool["nr"], global_pool["nc"]) != (0, 0):
        raise DlibFormatError("expected a global average pool before the fc layer")
    fc = _take_fc(stream)
    if stream.peek():
        raise DlibFormatError(f"unexpected layers after the fc layer: {stream.peek()}")
    i = dnn.input.fields
    return DlibResNet(stem, stem_pool, blocks, fc, (i["avg_red"], i["avg_green"], i["avg_blue"]))


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """dlib's face recognition ResNet as a float32 PyTorch module in eval mode (parameters frozen).

    ``path`` defaults to ``dlib_face_recognition_resnet_model_v1.dat`` from ``face-recognition-models``.
    """
    model = build_dlib_resnet(read_dnn(path if path is not None else dlib_model_path("resnet")))
    return model.float().eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------
# Face chips: the geometry (shared by the numpy and the torch extraction)


@dataclass(frozen=True)
class ChipDetails:
    """dlib's ``chip_details``: a rectangle in the image, rotated by ``angle`` about its centre."""

    rect: Rect
    angle: float
    rows: int
    cols: int


@dataclass(frozen=True)
class ChipPlan:
    """How dlib samples one chip: from ``level`` (−1 = the crop, k = pyramid level k) through ``affine``,
    a 2×3 map from chip (column, row) to that image's (x, y)."""

    level: int
    affine: np.ndarray


def _similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ m·src + t`` (Umeyama), as dlib's ``find_similarity_transform``."""
    mean_src, mean_dst = src.mean(axis=0), dst.mean(axis=0)
    ds, dd = src - mean_src, dst - mean_dst
    sigma_src = float(np.mean(np.sum(ds * ds, axis=1)))
    cov = dd.T @ ds / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1 if d[1] < d[0] else 0] = -1.0
    rotation = u @ np.diag(s) @ vt
    scale = float(np.sum(d * s)) / sigma_src if sigma_src != 0 else 1.0
    m = scale * rotation
    return m, mean_dst - m @ mean_src


def face_chip_details(points5: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
    """dlib's ``get_face_chip_details`` for 5 landmarks (shape_predictor_5 order)."""
    template = (padding + _TEMPLATE5) / (2 * padding + 1) * size
    m, t = _similarity_transform(template, np.asarray(points5, dtype=np.float64).reshape(5, 2))
    angle = math.atan2(m[1, 0], m[0, 0])
    scale = math.hypot(m[0, 0], m[1, 0])
    cx, cy = m @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2  # centered_drect makes the width one pixel less than asked
    return ChipDetails((cx - half, cy - half, cx + half, cy + half), angle, size, size)


def _is_empty(r: Rect) -> bool:
    return r[1] > r[3] or r[0] > r[2]


def _area(r: Rect) -> float:
    return 0.0 if _is_empty(r) else (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def _rect_down(r: Rect) -> Rect:
    """``pyramid_down<2>::rect_down``: each corner maps to p/2 − (1.25, 0.75)."""
    x0, y0, x1, y1 = r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _pyramid_downs(rect: Rect, pixels: int) -> tuple[int, Rect]:
    """How often dlib halves ``rect`` for a chip of ``pixels`` pixels (while the half is still larger than
    the chip), and the rectangle it ends with."""
    count = 0
    while _area(_rect_down(rect)) > pixels:
        rect = _rect_down(rect)
        count += 1
    return count, rect


def _rotate(center: tuple[float, float], p: tuple[float, float], angle: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = p[0] - center[0], p[1] - center[1]
    return (c * dx - s * dy + center[0], s * dx + c * dy + center[1])


def _rotated_corners(r: Rect, angle: float) -> list[tuple[float, float]]:
    """tl, tr, bl, br of ``r`` rotated by ``angle`` about its centre."""
    center = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)
    corners = [(r[0], r[1]), (r[2], r[1]), (r[0], r[3]), (r[2], r[3])]
    return [_rotate(center, p, angle) for p in corners]


def _round_rect(r: Rect) -> Rect:
    """drectangle → rectangle conversion: every coordinate rounded half up."""
    left, top, right, bottom = (float(math.floor(v + 0.5)) for v in r)
    return (left, top, right, bottom)


def _union(a: Rect, b: Rect) -> Rect:
    if _is_empty(b):
        return a
    if _is_empty(a):
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _chip_region(d: ChipDetails, width: int, height: int) -> tuple[Rect, int]:
    """The image region one chip reads (rotated rect grown by the pyramid border, clipped) and its depth."""
    depth, _ = _pyramid_downs(d.rect, d.rows * d.cols)
    grow = 2.0 ** (depth + 2) - 2  # a 2-pixel border at every level
    xs, ys = zip(*_rotated_corners(d.rect, d.angle))
    grown = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
    clipped = (max(grown[0], 0.0), max(grown[1], 0.0), min(grown[2], width - 1.0), min(grown[3], height - 1.0))
    return _round_rect(clipped), depth


def plan_chips(
    details: Sequence[ChipDetails], width: int, height: int
) -> tuple[tuple[int, int, int, int], int, list[ChipPlan]]:
    """dlib's ``extract_image_chips`` geometry for one image: the crop box (x0, y0, x1, y1, exclusive end)
    that all chips read, the pyramid depth to build over that crop, and one :class:`ChipPlan` per chip."""
    box: Rect = (0.0, 0.0, -1.0, -1.0)
    depth = 0
    for d in details:
        region, chip_depth = _chip_region(d, width, height)
        box = _union(box, region)
        depth = max(depth, chip_depth)
    plans = []
    for d in details:
        in_crop: Rect = (d.rect[0] - box[0], d.rect[1] - box[1], d.rect[2] - box[0], d.rect[3] - box[1])
        downs, rect = _pyramid_downs(in_crop, d.rows * d.cols)
        tl, tr, bl, _ = (np.array(p) for p in _rotated_corners(rect, d.angle))
        affine = np.stack([(tr - tl) / max(d.cols - 1, 1), (bl - tl) / max(d.rows - 1, 1), tl], axis=1)
        plans.append(ChipPlan(downs - 1, affine))
    crop = (int(box[0]), int(box[1]), int(box[2]) + 1, int(box[3]) + 1) if not _is_empty(box) else (0, 0, 0, 0)
    return crop, depth, plans


def _sample_grid(plan: ChipPlan, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates (x, y), each (rows, cols), of every chip pixel."""
    c, r = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    a = plan.affine
    return a[0, 0] * c + a[0, 1] * r + a[0, 2], a[1, 0] * c + a[1, 1] * r + a[1, 2]


def _inside(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """dlib's bilinear rule: the whole 2×2 neighbourhood must lie in the image, else the pixel is black."""
    left, top = np.floor(x), np.floor(y)
    return (left >= 0) & (top >= 0) & (left + 1 < width) & (top + 1 < height)


# ----------------------------------------------------------------------------------------------------------
# Face chips with numpy: dlib's exact integer pyramid and truncating bilinear sampling


def _binomial_every_other(x: np.ndarray, axis: int, count: int) -> np.ndarray:
    """``Σ_j taps[j]·x[2i + j]`` along ``axis`` for ``i < count`` (taps 1 4 6 4 1)."""
    terms = [k * np.take(x, np.arange(j, j + 2 * count, 2), axis=axis) for j, k in enumerate(_PYRAMID_TAPS)]
    return np.sum(terms, axis=0)


def _pyramid_down_uint8(img: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>`` on an RGB image: 5×5 binomial filter, every other pixel, integer /256."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    filtered = _binomial_every_other(img.astype(np.int32), axis=1, count=(w - 3) // 2)
    filtered = _binomial_every_other(filtered, axis=0, count=(h - 3) // 2)
    return (filtered // 256).astype(np.uint8)


def _sample_bilinear_uint8(img: np.ndarray, plan: ChipPlan, rows: int, cols: int) -> np.ndarray:
    x, y = _sample_grid(plan, rows, cols)
    h, w = img.shape[:2]
    ok = _inside(x, y, w, h)
    if not ok.any():
        return np.zeros((rows, cols, 3), dtype=np.uint8)
    left = np.where(ok, np.floor(x), 0).astype(np.int64)
    top = np.where(ok, np.floor(y), 0).astype(np.int64)
    lr = (x - np.floor(x))[..., None]
    tb = (y - np.floor(y))[..., None]
    src = img.astype(np.float64)
    tl, tr = src[top, left], src[top, left + 1]
    bl, br = src[top + 1, left], src[top + 1, left + 1]
    value = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    return np.where(ok[..., None], value, 0.0).astype(np.uint8)  # dlib truncates


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def face_chips(
    image_rgb_uint8: np.ndarray,
    landmarks5_list: Sequence[np.ndarray] | np.ndarray,
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
) -> np.ndarray:
    """dlib's face chips, (n, size, size, 3) uint8, as ``compute_face_descriptor`` cuts them.

    All faces of one image must be passed together: dlib reads them from one shared crop (and pyramid),
    so a chip can depend on the other faces. For a single face this equals ``dlib.get_face_chip``.
    """
    img = _as_rgb(np.asarray(image_rgb_uint8, dtype=np.uint8))
    if not len(landmarks5_list):
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    details = [face_chip_details(p, size, padding) for p in landmarks5_list]
    (x0, y0, x1, y1), depth, plans = plan_chips(details, img.shape[1], img.shape[0])
    levels = [img[y0:y1, x0:x1]]
    for _ in range(depth):
        levels.append(_pyramid_down_uint8(levels[-1]))
    chips = [_sample_bilinear_uint8(levels[p.level + 1], p, d.rows, d.cols) for p, d in zip(plans, details)]
    return np.stack(chips)


# ----------------------------------------------------------------------------------------------------------
# Face chips with torch: the same geometry, differentiable with respect to the image


def _pyramid_down_torch(img: torch.Tensor) -> torch.Tensor:
    """Float version of dlib's ``pyramid_down<2>`` on (1, 3, H, W) (no integer truncation)."""
    if img.shape[2] <= 8 or img.shape[3] <= 8:
        return img.new_zeros((1, 3, 0, 0))
    taps = torch.tensor(_PYRAMID_TAPS, dtype=img.dtype, device=img.device)
    kernel = (taps[:, None] * taps[None, :] / 256.0).expand(3, 1, 5, 5)
    return F.conv2d(img, kernel, stride=2, groups=3)


def _sample_bilinear_torch(img: torch.Tensor, plan: ChipPlan, rows: int, cols: int) -> torch.Tensor:
    """(3, rows, cols) bilinear samples of (1, 3, H, W) ``img``; black where dlib's rule says so."""
    x, y = _sample_grid(plan, rows, cols)
    h, w = img.shape[2:]
    ok = _inside(x, y, w, h)
    if not ok.any():
        return img.new_zeros((3, rows, cols))
    grid = np.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], axis=-1)
    grid_t = torch.from_numpy(grid).to(img.device, img.dtype)[None]
    chip = F.grid_sample(img, grid_t, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return chip * torch.from_numpy(ok).to(img.device, img.dtype)


def face_chips_torch(
    image: torch.Tensor,
    landmarks5: Sequence[np.ndarray] | np.ndarray,
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
) -> torch.Tensor:
    """Differentiable dlib face chips: ``image`` is (H, W, 3) RGB float in [0, 255] (it may require grad),
    ``landmarks5`` the (n, 5, 2) points of the faces in it. Returns (n, 3, size, size) floats, ready for
    :class:`DlibResNet`. Same geometry as :func:`face_chips`, but the pyramid and the samples stay
    unrounded (dlib truncates them to uint8)."""
    points = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 5, 2)
    image = image if image.is_floating_point() else image.float()
    if not len(points):
        return image.new_zeros((0, 3, size, size))
    details = [face_chip_details(p, size, padding) for p in points]
    (x0, y0, x1, y1), depth, plans = plan_chips(details, image.shape[1], image.shape[0])
    levels = [image[y0:y1, x0:x1].permute(2, 0, 1)[None]]
    for _ in range(depth):
        levels.append(_pyramid_down_torch(levels[-1]))
    chips = [_sample_bilinear_torch(levels[p.level + 1], p, d.rows, d.cols) for p, d in zip(plans, details)]
    return torch.stack(chips)


def chips_to_tensor(chips: np.ndarray) -> torch.Tensor:
    """(n, H, W, 3) uint8 chips → (n, 3, H, W) float32 tensor for :class:`DlibResNet`."""
    return torch.from_numpy(np.ascontiguousarray(chips.transpose(0, 3, 1, 2))).float()


# ----------------------------------------------------------------------------------------------------------
# The recognizer

THREADS_ENV = "FACEDEID_TORCH_THREADS"


@contextmanager
def torch_threads() -> Iterator[int]:
    """Run torch with ``$FACEDEID_TORCH_THREADS`` threads (default 1), restoring the old setting."""
    try:
        n = max(1, int(os.environ.get(THREADS_ENV, "1") or 1))
    except ValueError:
        n = 1
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)



@functools.cache
def _model_on(device: str) -> DlibResNet:
    return load_dlib_resnet().to(device)


class TorchDlibRecognizer:
    """dlib's 128-D ResNet run by PyTorch: the same descriptors as :class:`DlibRecognizer` (to ~1e-6),
    computed in batches. Euclidean threshold 0.6."""

    name: ClassVar[str] = "dlib-torch"
    dim: ClassVar[int] = 128
    metric: ClassVar[Literal["euclidean", "cosine"]] = "euclidean"
    threshold: ClassVar[float] = 0.6

    def __init__(self, batch_size: int = 32, device: str | torch.device = "cpu") -> None:
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.model = _model_on(str(self.device))

    def descriptors(self, chips: np.ndarray) -> np.ndarray:
        """(n, 128) float32 descriptors of (n, 150, 150, 3) uint8 chips."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(chips), self.batch_size):
                batch = chips_to_tensor(chips[start : start + self.batch_size]).to(self.device)
                out.append(self.model(batch).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), dtype=np.float32)

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.dim), dtype=np.float32)
        # As DlibRecognizer: dlib takes each face's 5 points rounded to whole pixels.
        points = [np.round(np.asarray(f.landmarks5, dtype=np.float64)) for f in faces]
        return self.descriptors(face_chips(_as_rgb(image), points))
