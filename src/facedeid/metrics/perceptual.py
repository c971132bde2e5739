"""Perceptual metrics: FID and LPIPS (book Ch. 3.3.2; Tables 4.1, 5.1, 6.2).

Both need pretrained networks that no package registry ships (pytorch-fid and lpips download their
backbones at run time), so the weights are given by path:

* FID (Heusel et al. 2017): pytorch-fid's Inception-v3 ``pt_inception-2015-12-05-6726825d.pth``
  (the port of TensorFlow's 2015-12-05 graph that the original FID code used). The network is
  implemented here in plain torch (:class:`FIDInceptionV3`, pool3 features, 2048-D) and loads that
  state dict unchanged; :func:`frechet_distance` is the closed form between two Gaussians.
* LPIPS (Zhang et al. 2018, v0.1, AlexNet): torchvision's AlexNet state dict
  (``alexnet-owt-7be5be79.pth``) for the backbone and lpips's linear heads (``weights/v0.1/alex.pth``
  in the lpips package), or one file holding both. :class:`AlexNetFeatures` is the 5-conv AlexNet
  feature stack in plain torch; :class:`LPIPS` does the scaling, unit-normalisation, squared
  difference, 1×1 linear heads and spatial average.

Validation: no pretrained weights exist offline, so the ports are checked layer for layer against
the published definitions (torchvision's AlexNet ``features`` run side by side on one state dict;
Inception's parameter count equals Keras' InceptionV3 less its top) and the metric arithmetic on
known answers — not against reference FID/LPIPS values. Run one known pair with the real files
before quoting numbers.

Without weights the public entry points :func:`fid` and :func:`lpips` return a
:class:`PerceptualResult` with ``available=False`` and ``value=None``: there is never a substitute
network reported under the same name. ``torch`` is imported lazily (only when weights are given).
"""
from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import linalg

from ..errors import ModelUnavailable

if TYPE_CHECKING:  # pragma: no cover
    import torch

PathLike = str | os.PathLike[str]


# ============================================================================ result object
@dataclass(frozen=True)
class PerceptualResult:
    """A perceptual metric's value, or why there is none.

    ``value`` is None exactly when ``available`` is False; ``reason`` then says why
    (e.g. ``"not available: no --fid-weights given"``). ``weights`` names the file used.
    """

    name: str
    value: float | None
    available: bool
    reason: str = ""
    weights: str = ""
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "available": self.available, "reason": self.reason,
                "weights": self.weights, "n": self.n}


def available(path: PathLike | None) -> bool:
    """True when a weight file was given and is a readable regular file (contents are checked on load)."""
    if path is None or str(path) == "":
        return False
    p = Path(path).expanduser()
    return p.is_file() and os.access(p, os.R_OK)


def _unavailable(name: str, option: str, path: PathLike | None) -> PerceptualResult:
    if path is None or str(path) == "":
        reason = f"not available: no {option} given (no registry ships these weights)"
    else:
        reason = f"not available: {option} {path} is not a readable file"
    return PerceptualResult(name=name, value=None, available=False, reason=reason)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of this module's loaders
        raise ModelUnavailable("perceptual metrics need PyPI 'torch'") from exc
    return torch


def _load_state_dict(path: PathLike) -> dict[str, "torch.Tensor"]:
    torch = _torch()
    try:
        obj = torch.load(str(Path(path).expanduser()), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelUnavailable(f"cannot read weights {path}: {exc}") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelUnavailable(f"{path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_into(module: "torch.nn.Module", state: dict[str, "torch.Tensor"], source: str, ignore: Sequence[str] = ()) -> None:
    """Load ``state`` into ``module``: every parameter and buffer must be present with its shape
    (BatchNorm's ``num_batches_tracked`` excepted); extra keys must start with a prefix in ``ignore``."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in own and not k.startswith(tuple(ignore))]
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        raise ModelUnavailable(
            f"{source} does not fit: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected "
            f"(e.g. {extra[:3]}), {len(bad)} with wrong shapes (e.g. {bad[:3]})"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _images_to_tensor(images: Sequence[np.ndarray] | np.ndarray) -> "torch.Tensor":
    """uint8 RGB (or grey) images of one size, (n, H, W[, 3]) -> float tensor (n, 3, H, W) in [0, 1]."""
    torch = _torch()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] < 3:
        raise ValueError(f"expected (n, H, W, 3) images, got {arr.shape}")
    x = arr[..., :3].astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr[..., :3].astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# ============================================================================ Fréchet distance
def _trace_sqrt_product_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """tr((s1 s2)^½) with ``scipy.linalg.sqrtm`` and pytorch-fid's fixes (eps·I offset, real part)."""
    with warnings.catch_warnings():  # a singular product is expected with few samples; handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(np.trace(covmean))


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((s1 s2)^½) = Σ √λ(s1^½ s2 s1^½): symmetric eigen-decompositions only (s1 s2 is similar to
    that PSD matrix), stable for singular covariances and several times faster than ``sqrtm``."""
    r = _psd_sqrt(s1)
    lam = np.linalg.eigvalsh(r @ s2 @ r)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6,
    method: Literal["sqrtm", "eigh"] = "sqrtm",
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID, Heusel et al. 2017):

    ``d² = |mu1 − mu2|² + tr(sigma1 + sigma2 − 2 (sigma1 sigma2)^{1/2})``.

    ``method="sqrtm"`` (default) is pytorch-fid's recipe: ``scipy.linalg.sqrtm`` of the product; when
    it is not finite ``eps·I`` is added to both covariances, and a negligible imaginary part from
    round-off is dropped (``ValueError`` on a large one). ``method="eigh"`` computes the same trace
    from symmetric eigen-decompositions (PSD by construction; ~6× faster for 2048-D features). Tiny
    negative results from round-off are returned as 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(s1, s2, eps)
    elif method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(s1, s2)
    else:
        raise ValueError(f"unknown method {method!r} (sqrtm or eigh)")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    scale = float(np.trace(s1) + np.trace(s2) + diff @ diff) + 1.0
    return 0.0 if -1e-6 * scale < value < 0.0 else value  # round-off below zero (singular products)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, ``np.cov``) covariance of (n, d) features, n ≥ 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (n >= 2, d) features, got {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _fid_low_rank(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID from the centred feature matrices, exact: with ``A = (X − x̄)/√(n−1)`` (so ``S = AᵀA``),
    ``tr S = ‖A‖²_F`` and ``tr (S_a S_b)^½ = ‖A_a A_bᵀ‖_*`` (the nonzero eigenvalues of ``S_a S_b`` are
    those of ``M Mᵀ`` with ``M = A_a A_bᵀ``). Costs n_a·n_b·d, so it is the fast and stable choice
    when there are fewer samples than dimensions (where ``sqrtm`` meets a singular product)."""
    fa, fb = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    for f in (fa, fb):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"need (n >= 2, d) features, got {f.shape}")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    ma, mb = fa.mean(axis=0), fb.mean(axis=0)
    aa = (fa - ma) / np.sqrt(fa.shape[0] - 1)
    ab = (fb - mb) / np.sqrt(fb.shape[0] - 1)
    nuclear = float(np.linalg.svd(aa @ ab.T, compute_uv=False).sum())
    diff = ma - mb
    value = float(diff @ diff + np.sum(aa * aa) + np.sum(ab * ab) - 2.0 * nuclear)
    scale = float(np.sum(aa * aa) + np.sum(ab * ab) + diff @ diff) + 1.0
    return 0.0 if -1e-9 * scale < value < 0.0 else value


def fid_from_features(
    features_a: np.ndarray, features_b: np.ndarray, method: Literal["auto", "sqrtm", "eigh", "low-rank"] = "auto"
) -> float:
    """FID between two sets of (n, d) feature vectors (e.g. Inception pool3 features).

    ``method="auto"``: the exact low-rank form (:func:`_fid_low_rank`) when a set has no more samples
    than dimensions, else pytorch-fid's ``sqrtm`` recipe; ``"sqrtm"``/``"eigh"``: Gaussian statistics
    then :func:`frechet_distance`; ``"low-rank"``: always the feature-matrix form. All give the same
    quantity up to round-off.
    """
    fa, fb = np.asarray(features_a), np.asarray(features_b)
    if method == "auto":
        method = "low-rank" if min(len(fa), len(fb)) <= np.shape(fa)[-1] else "sqrtm"
    if method == "low-rank":
        return _fid_low_rank(fa, fb)
    return frechet_distance(*gaussian_stats(fa), *gaussian_stats(fb), method=method)  # type: ignore[arg-type]


# ============================================================================ Inception-v3 (pytorch-fid)
def _inception_modules() -> dict[str, type]:
    """The Inception-v3 blocks of pytorch-fid's FID variant, in torchvision's parameter layout.

    Built lazily so that importing this module needs no torch.
    """
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class BasicConv2d(nn.Module):
        def __init__(self, cin: int, cout: int, **kw: Any) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg3(x):  # FID variant: average pooling that does not count the zero padding
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class InceptionA(nn.Module):  # pytorch-fid FIDInceptionA
        def __init__(self, cin: int, pool_features: int) -> None:
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

        def forward(self, x):
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            bp = self.branch_pool(avg3(x))
            return torch.cat([b1, b5, b3, bp], 1)

    class InceptionB(nn.Module):  # torchvision InceptionB (grid reduction 35 -> 17)
        def __init__(self, cin: int) -> None:
            super().__init__()
            self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3(x)
            bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class InceptionC(nn.Module):  # pytorch-fid FIDInceptionC
        def __init__(self, cin: int, c7: int) -> None:
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = self.branch7x7dbl_1(x)
            for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                bd = layer(bd)
            return torch.cat([b1, b7, bd, self.branch_pool(avg3(x))], 1)

    class InceptionD(nn.Module):  # torchvision InceptionD (grid reduction 17 -> 8)
        def __init__(self, cin: int) -> None:
            super().__init__()
            self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3_2(self.branch3x3_1(x))
            b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class InceptionE(nn.Module):  # pytorch-fid FIDInceptionE_1 (avg pool) / FIDInceptionE_2 (max pool)
        def __init__(self, cin: int, max_pool: bool) -> None:
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b1 = self.branch1x1(x)
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            # The TF graph's last block max-pools here (a bug in the original that FID keeps).
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else avg3(x)
            return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)

    return {"BasicConv2d": BasicConv2d, "A": InceptionA, "B": InceptionB, "C": InceptionC,
            "D": InceptionD, "E": InceptionE}


FID_INPUT = 299
FID_DIM = 2048


def build_fid_inception() -> "torch.nn.Module":
    """pytorch-fid's FID Inception-v3 up to pool3, randomly initialised, in eval mode.

    Parameter names equal torchvision's ``Inception3`` (``Conv2d_1a_3x3.conv.weight``,
    ``Mixed_5b.branch1x1.bn.running_mean``, ...), which is the layout of
    ``pt_inception-2015-12-05-6726825d.pth``; that file's ``fc.*`` (1008 classes) is not used.
    Forward: (n, 3, H, W) floats in [0, 1] -> (n, 2048) pool3 features; inputs are resized to
    299×299 bilinearly (``align_corners=False``) and scaled to [−1, 1] as pytorch-fid does.
    """
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    m = _inception_modules()
    conv = m["BasicConv2d"]

    class FIDInceptionV3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.Conv2d_1a_3x3 = conv(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
            self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
            self.Mixed_5b = m["A"](192, pool_features=32)
            self.Mixed_5c = m["A"](256, pool_features=64)
            self.Mixed_5d = m["A"](288, pool_features=64)
            self.Mixed_6a = m["B"](288)
            self.Mixed_6b = m["C"](768, c7=128)
            self.Mixed_6c = m["C"](768, c7=160)
            self.Mixed_6d = m["C"](768, c7=160)
            self.Mixed_6e = m["C"](768, c7=192)
            self.Mixed_7a = m["D"](768)
            self.Mixed_7b = m["E"](1280, max_pool=False)
            self.Mixed_7c = m["E"](2048, max_pool=True)

        def forward(self, x):
            x = F.interpolate(x, size=(FID_INPUT, FID_INPUT), mode="bilinear", align_corners=False)
            x = 2.0 * x - 1.0
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                         "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
                x = getattr(self, name)(x)
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    return FIDInceptionV3().eval()


def load_fid_inception(path: PathLike) -> "torch.nn.Module":
    """:func:`build_fid_inception` with pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` loaded.

    Raises :class:`ModelUnavailable` when the file is unreadable or its tensors do not fit.
    """
    net = build_fid_inception()
    _load_into(net, _load_state_dict(path), str(path), ignore=("fc.", "AuxLogits."))
    return net.eval()


def _file_key(path: PathLike) -> tuple[str, int, int]:
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return str(p), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=2)
def _cached_fid_inception(path: str, mtime_ns: int, size: int) -> "torch.nn.Module":
    """:func:`load_fid_inception`, loaded once per file version (path, mtime, size)."""
    return load_fid_inception(path)


def inception_features(net: "torch.nn.Module", images: Sequence[np.ndarray] | np.ndarray, batch: int = 16) -> np.ndarray:
    """Pool3 features (n, 2048) of uint8 RGB images of one size (any size; resized to 299)."""
    torch = _torch()
    x = _images_to_tensor(images)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(net(x[i : i + batch]).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, FID_DIM))


def fid(
    images_a: Sequence[np.ndarray] | np.ndarray,
    images_b: Sequence[np.ndarray] | np.ndarray,
    weights: PathLike | None = None,
    method: Literal["auto", "sqrtm", "eigh", "low-rank"] = "auto",
) -> PerceptualResult:
    """FID between two image sets (e.g. original vs de-identified faces; Tables 4.1, 5.1, 6.2).

    ``weights`` is the path of pytorch-fid's Inception file (``--fid-weights``); without it the result
    is "not available". Each set's images share one size; at least 2 per set (FID is only
    meaningful with thousands; a warning is the caller's business). ``method``: see
    :func:`fid_from_features`.
    """
    if not available(weights):
        return _unavailable("fid", "--fid-weights", weights)
    net = _cached_fid_inception(*_file_key(weights))  # type: ignore[arg-type]
    fa, fb = inception_features(net, images_a), inception_features(net, images_b)
    value = fid_from_features(fa, fb, method=method)
    return PerceptualResult("fid", value, True, weights=str(weights), n=min(len(fa), len(fb)))


# ============================================================================ LPIPS (AlexNet, v0.1)
#: torchvision AlexNet ``features`` indices of the 5 convolutions and their (in, out, kernel, stride, pad).
ALEXNET_CONVS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (0, 3, 64, 11, 4, 2),
    (3, 64, 192, 5, 1, 2),
    (6, 192, 384, 3, 1, 1),
    (8, 384, 256, 3, 1, 1),
    (10, 256, 256, 3, 1, 1),
)
LPIPS_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)
#: lpips's ScalingLayer: inputs in [−1, 1] become ``(x − shift) / scale`` (ImageNet statistics).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def build_alexnet_features() -> "torch.nn.Module":
    """torchvision's AlexNet feature stack (5 convolutions) returning the 5 LPIPS taps.

    Parameter names are torchvision's (``features.0.weight`` ... ``features.10.bias``). The taps are the
    ReLU outputs after conv1..conv5 (relu1 64 ch, relu2 192, relu3 384, relu4 256, relu5 256); max
    pooling (3, stride 2) follows relu1 and relu2, as in torchvision's ``features[0:12]``.
    """
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class AlexNetFeatures(nn.Module):
        channels = LPIPS_CHANNELS

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Module()
            for idx, cin, cout, k, s, p in ALEXNET_CONVS:
                self.features.add_module(str(idx), nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p))

        def forward(self, x):
            taps = []
            for i, (idx, *_rest) in enumerate(ALEXNET_CONVS):
                if i in (1, 2):
                    x = F.max_pool2d(x, kernel_size=3, stride=2)
                x = F.relu(getattr(self.features, str(idx))(x))
                taps.append(x)
            return taps

    return AlexNetFeatures().eval()


def build_lpips(backbone: "torch.nn.Module | None" = None, channels: Sequence[int] = LPIPS_CHANNELS) -> "torch.nn.Module":
    """LPIPS around ``backbone`` (a module returning a list of feature maps with ``channels``).

    ``lpips(x0, x1)`` for (n, 3, H, W) images in [−1, 1] returns (n,) distances:
    ``Σ_l mean_{h,w} Σ_c w_{l,c} (f̂⁰_{l,chw} − f̂¹_{l,chw})²`` with ``f̂ = f / (‖f‖₂ over channels + 1e-10)``,
    after lpips's input scaling. Heads ``lin{l}.model.1.weight`` of shape (1, C_l, 1, 1), as in lpips.
    Default backbone: :func:`build_alexnet_features`. Randomly initialised; see :func:`load_lpips`.
    """
    torch = _torch()
    nn = torch.nn

    class NetLin(nn.Module):  # lpips NetLinLayer: Dropout (identity in eval) + 1×1 conv without bias
        def __init__(self, c: int) -> None:
            super().__init__()
            self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, kernel_size=1, stride=1, padding=0, bias=False))

    class LPIPSNet(nn.Module):
        def __init__(self, net: nn.Module, chns: Sequence[int]) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
            for i, c in enumerate(chns):
                self.add_module(f"lin{i}", NetLin(c))
            self.n_layers = len(chns)

        def forward(self, x0, x1):
            f0 = self.net((x0 - self.shift) / self.scale)
            f1 = self.net((x1 - self.shift) / self.scale)
            total = 0.0
            for i in range(self.n_layers):
                d = (normalise_channels(f0[i]) - normalise_channels(f1[i])) ** 2
                total = total + getattr(self, f"lin{i}").model(d).mean(dim=(2, 3), keepdim=True)
            return total.view(-1)

    return LPIPSNet(backbone if backbone is not None else build_alexnet_features(), channels).eval()


def normalise_channels(x: "torch.Tensor", eps: float = 1e-10) -> "torch.Tensor":
    """lpips ``normalize_tensor``: each spatial feature vector divided by its L2 norm (+ eps)."""
    torch = _torch()
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


_HEAD_KEY = re.compile(r"^lins?\.?(\d+)\.model\.1\.weight$")


def load_lpips(backbone_path: PathLike, heads_path: PathLike | None = None) -> "torch.nn.Module":
    """LPIPS-Alex v0.1 from torchvision's AlexNet state dict and lpips's ``alex.pth`` linear heads.

    ``heads_path`` None: ``backbone_path`` holds both (``features.*`` and ``lin0..4.model.1.weight``).
    AlexNet's ``classifier.*`` is ignored. Raises :class:`ModelUnavailable` when the tensors do not fit.
    """
    model = build_lpips()
    state = _load_state_dict(backbone_path)
    heads = _load_state_dict(heads_path) if heads_path is not None else state
    merged = {f"net.{k}": v for k, v in state.items() if k.startswith("features.")}
    for key, value in heads.items():  # lpips saves ``lin{l}.model.1.weight`` (``lins.{l}.`` accepted too)
        m = _HEAD_KEY.match(key)
        if m:
            merged[f"lin{m.group(1)}.model.1.weight"] = value
    merged["shift"], merged["scale"] = model.shift, model.scale
    source = f"{backbone_path}" + (f" + {heads_path}" if heads_path is not None else "")
    _load_into(model, merged, source)
    return model.eval()


@functools.lru_cache(maxsize=2)
def _cached_lpips(backbone: tuple[str, int, int], heads: tuple[str, int, int] | None) -> "torch.nn.Module":
    """:func:`load_lpips`, loaded once per version of the weight file(s)."""
    return load_lpips(backbone[0], heads[0] if heads is not None else None)


def lpips_distances(model: "torch.nn.Module", images_a: Sequence[np.ndarray] | np.ndarray,
                    images_b: Sequence[np.ndarray] | np.ndarray, batch: int = 16) -> np.ndarray:
    """Per-pair LPIPS distances (n,) of uint8 RGB image pairs of one size (scaled to [−1, 1])."""
    torch = _torch()
    xa, xb = _images_to_tensor(images_a), _images_to_tensor(images_b)
    if xa.shape != xb.shape:
        raise ValueError(f"image sets differ in shape: {tuple(xa.shape)} vs {tuple(xb.shape)}")
    out = []
    with torch.inference_mode():
        for i in range(0, len(xa), batch):
            out.append(model(xa[i : i + batch] * 2 - 1, xb[i : i + batch] * 2 - 1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def lpips(
    images_a: Sequence[np.ndarray] | np.ndarray,
    images_b: Sequence[np.ndarray] | np.ndarray,
    weights: PathLike | None = None,
    heads: PathLike | None = None,
) -> PerceptualResult:
    """Mean LPIPS-Alex between paired images (Tables 4.1, 5.1, 6.2); "not available" without weights.

    ``weights`` (``--lpips-weights``) is torchvision's AlexNet state dict, or one file holding it and the
    lpips heads; ``heads`` is lpips's ``alex.pth`` when separate.
    """
    if not available(weights):
        return _unavailable("lpips", "--lpips-weights", weights)
    if heads is not None and not available(heads):
        return _unavailable("lpips", "lpips heads file", heads)
    model = _cached_lpips(_file_key(weights), _file_key(heads) if heads is not None else None)  # type: ignore[arg-type]
    d = lpips_distances(model, images_a, images_b)
    name = f"{weights}" + (f" + {heads}" if heads is not None else "")
    return PerceptualResult("lpips", float(d.mean()) if d.size else float("nan"), True, weights=name, n=int(d.size))


def results_dict(results: Iterable[PerceptualResult]) -> dict[str, dict[str, Any]]:
    """Results keyed by metric name, for a metrics.json."""
    return {r.name: r.to_dict() for r in results}
