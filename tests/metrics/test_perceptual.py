"""FID and LPIPS: the math on synthetic inputs with closed-form answers, the network ports on
random weights in the standard state-dict layouts (no pretrained weights exist offline), and the
"not available" result when no weights are given."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facedeid.errors import ModelUnavailable
from facedeid.metrics import perceptual as P


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# ============================================================================ Fréchet distance
METHODS = pytest.mark.parametrize("method", ["sqrtm", "eigh"])


@METHODS
def test_frechet_identical_gaussians_is_zero(method):
    rng = np.random.default_rng(0)
    mu, s = rng.normal(size=16), _spd(rng, 16)
    assert P.frechet_distance(mu, s, mu, s, method=method) == pytest.approx(0.0, abs=1e-8)


@METHODS
def test_frechet_shifted_means_is_squared_distance(method):
    rng = np.random.default_rng(1)
    mu, s = rng.normal(size=8), _spd(rng, 8)
    delta = rng.normal(size=8)
    assert P.frechet_distance(mu, s, mu + delta, s, method=method) == pytest.approx(float(delta @ delta), rel=1e-8)


@METHODS
def test_frechet_diagonal_and_rotated_covariances_closed_form(method):
    """Commuting covariances Q·diag(a)·Qᵀ, Q·diag(b)·Qᵀ: d² = |Δμ|² + Σ(√a − √b)²."""
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 5.0, 10), rng.uniform(0.1, 5.0, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = float((mu1 - mu2) @ (mu1 - mu2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert P.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method) == pytest.approx(expected, rel=1e-8)
    q = _rotation(rng, 10)
    rotated = P.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T, method=method)
    assert rotated == pytest.approx(expected, rel=1e-7)
    # one dimension: (μ1 − μ2)² + (σ1 − σ2)²
    assert P.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]], method=method) == pytest.approx(4.0 + 1.0)


def test_frechet_general_covariances_match_the_symmetric_form():
    """tr((S1 S2)^½) = tr((S1^½ S2 S1^½)^½) for non-commuting SPD matrices."""
    rng = np.random.default_rng(3)
    s1, s2 = _spd(rng, 12), _spd(rng, 12)

    def msqrt(m: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r = msqrt(s1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.trace(msqrt(r @ s2 @ r))
    assert P.frechet_distance(np.zeros(12), s1, np.zeros(12), s2) == pytest.approx(expected, rel=1e-8)
    assert P.frechet_distance(np.zeros(12), s1, np.zeros(12), s2) == pytest.approx(
        P.frechet_distance(np.zeros(12), s2, np.zeros(12), s1), rel=1e-8)
    assert P.frechet_distance(np.zeros(12), s1, np.zeros(12), s2, method="eigh") == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("n_a,n_b,d", [(5, 7, 64), (40, 30, 6), (3, 3, 3)])
def test_low_rank_fid_equals_the_gaussian_form(n_a, n_b, d):
    rng = np.random.default_rng(n_a * d)
    fa = rng.normal(size=(n_a, d)) @ rng.normal(size=(d, d))
    fb = rng.normal(size=(n_b, d)) * 2 + 1
    ref = P.frechet_distance(*P.gaussian_stats(fa), *P.gaussian_stats(fb), method="eigh")
    assert P.fid_from_features(fa, fb, method="low-rank") == pytest.approx(ref, rel=1e-7)
    assert P.fid_from_features(fa, fb) == pytest.approx(ref, rel=1e-7)  # auto
    assert P.fid_from_features(fa, fa, method="low-rank") == pytest.approx(0.0, abs=1e-9)


@METHODS
def test_frechet_singular_covariances_stay_finite(method):
    """Fewer samples than dimensions (as FID on a few faces): rank-deficient, still finite and ≥ 0."""
    rng = np.random.default_rng(4)
    fa, fb = rng.normal(size=(5, 64)), rng.normal(size=(5, 64)) + 0.5
    with np.errstate(all="ignore"):
        d = P.fid_from_features(fa, fb, method=method)
        assert np.isfinite(d) and d > 0
        assert d == pytest.approx(P.fid_from_features(fa, fb, method="eigh"), rel=1e-4)
        assert P.fid_from_features(fa, fa, method=method) == pytest.approx(0.0, abs=1e-6)


def test_fid_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(5)
    a, b = np.array([1.0, 2.0, 0.5]), np.array([2.0, 0.5, 0.5])
    fa = rng.normal(size=(40000, 3)) * np.sqrt(a)
    fb = rng.normal(size=(40000, 3)) * np.sqrt(b) + [1.0, 0.0, 0.0]
    expected = 1.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert P.fid_from_features(fa, fb) == pytest.approx(expected, abs=0.03)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        P.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        P.gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        P.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3), method="magic")


# ============================================================================ LPIPS math
class _Identity(nn.Module):
    def forward(self, x):
        return [x]


class _Two(nn.Module):
    """Two taps: the input and its 2×2 average pool, scaled per pixel by a positive factor."""

    def forward(self, x):
        g = 1.0 + x.abs().sum(1, keepdim=True)  # positive per-pixel gain: removed by the normalisation
        return [x * g, nn.functional.avg_pool2d(x, 2) * 3.0]


def _lpips_by_hand(x0: np.ndarray, x1: np.ndarray, heads: list[np.ndarray], taps) -> np.ndarray:
    shift = np.array(P.LPIPS_SHIFT).reshape(1, 3, 1, 1)
    scale = np.array(P.LPIPS_SCALE).reshape(1, 3, 1, 1)
    f0, f1 = taps((x0 - shift) / scale), taps((x1 - shift) / scale)
    total = np.zeros(x0.shape[0])
    for a, b, w in zip(f0, f1, heads):
        na = a / (np.sqrt((a**2).sum(1, keepdims=True)) + 1e-10)
        nb = b / (np.sqrt((b**2).sum(1, keepdims=True)) + 1e-10)
        total += ((na - nb) ** 2 * w.reshape(1, -1, 1, 1)).sum(1).mean(axis=(1, 2))
    return total


def _set_heads(model: nn.Module, heads: list[np.ndarray]) -> None:
    with torch.no_grad():
        for i, w in enumerate(heads):
            getattr(model, f"lin{i}").model[1].weight.copy_(torch.from_numpy(w).float().view(1, -1, 1, 1))


def _run(model: nn.Module, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x0).float(), torch.from_numpy(x1).float()).double().numpy()


def test_lpips_math_with_an_identity_backbone():
    rng = np.random.default_rng(6)
    x0, x1 = rng.uniform(-1, 1, (2, 3, 6, 5)), rng.uniform(-1, 1, (2, 3, 6, 5))
    heads = [np.array([0.5, 1.0, 2.0])]
    model = P.build_lpips(_Identity(), channels=(3,))
    _set_heads(model, heads)
    got = _run(model, x0, x1)
    assert got == pytest.approx(_lpips_by_hand(x0, x1, heads, lambda x: [x]), rel=1e-5)
    same = _run(model, x0, x0)
    assert np.allclose(same, 0.0)


def test_lpips_math_sums_layers_and_ignores_feature_scale():
    rng = np.random.default_rng(7)
    x0, x1 = rng.uniform(-1, 1, (3, 3, 8, 8)), rng.uniform(-1, 1, (3, 3, 8, 8))
    heads = [np.array([1.0, 0.2, 0.7]), np.array([0.3, 0.3, 1.5])]
    model = P.build_lpips(_Two(), channels=(3, 3))
    _set_heads(model, heads)

    def taps(x):  # the same taps without the positive gains, which normalisation cancels
        pooled = x.reshape(x.shape[0], 3, 4, 2, 4, 2).mean(axis=(3, 5))
        return [x, pooled]

    got = _run(model, x0, x1)
    assert got == pytest.approx(_lpips_by_hand(x0, x1, heads, taps), rel=1e-5)
    swapped = _run(model, x1, x0)
    assert swapped == pytest.approx(got, rel=1e-6)


# ============================================================================ AlexNet port
def _torchvision_alexnet_features() -> nn.Sequential:
    """torchvision.models.alexnet().features, written out (indices are the state-dict keys)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )


@pytest.fixture(scope="module")
def alexnet_files(tmp_path_factory) -> tuple[Path, Path, Path, nn.Sequential, list[np.ndarray]]:
    torch.manual_seed(0)
    ref = _torchvision_alexnet_features().eval()
    backbone = {f"features.{k}": v for k, v in ref.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision's classifier: ignored
    rng = np.random.default_rng(8)
    heads = [rng.uniform(0, 1, c) for c in P.LPIPS_CHANNELS]
    head_sd = {f"lin{i}.model.1.weight": torch.from_numpy(w).float().view(1, -1, 1, 1) for i, w in enumerate(heads)}
    d = tmp_path_factory.mktemp("lpips")
    torch.save(backbone, d / "alexnet.pth")
    torch.save(head_sd, d / "alex_heads.pth")
    torch.save({**backbone, **head_sd}, d / "both.pth")
    return d / "alexnet.pth", d / "alex_heads.pth", d / "both.pth", ref, heads


def test_alexnet_taps_equal_torchvision_layout(alexnet_files):
    backbone_path, heads_path, _, ref, _ = alexnet_files
    model = P.load_lpips(backbone_path, heads_path)
    x = torch.randn(2, 3, 64, 64)
    expected, h = [], x
    with torch.no_grad():
        taps = model.net(x)
        for i, layer in enumerate(ref):
            h = layer(h.clone())
            if i in (1, 4, 7, 9, 11):
                expected.append(h.clone())
    assert [t.shape[1] for t in taps] == list(P.LPIPS_CHANNELS)
    assert [tuple(t.shape[2:]) for t in taps] == [(15, 15), (7, 7), (3, 3), (3, 3), (3, 3)]
    for t, e in zip(taps, expected):
        assert torch.allclose(t, e, atol=1e-5)


def test_lpips_loads_split_or_combined_files(alexnet_files):
    backbone_path, heads_path, both_path, ref, heads = alexnet_files
    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    r1 = P.lpips(a, b, backbone_path, heads_path)
    r2 = P.lpips(a, b, both_path)
    assert r1.available and r2.available and r1.value == pytest.approx(r2.value) and r1.n == 2
    assert r1.value > 0 and P.lpips(a, a, both_path).value == pytest.approx(0.0, abs=1e-7)
    # the whole pipeline by hand: [0, 255] -> [-1, 1], torchvision taps, heads
    x0 = a.transpose(0, 3, 1, 2) / 127.5 - 1
    x1 = b.transpose(0, 3, 1, 2) / 127.5 - 1

    def taps(x: np.ndarray) -> list[np.ndarray]:
        out, h = [], torch.from_numpy(x).float()
        with torch.no_grad():
            for i, layer in enumerate(ref[:12]):  # the last max pool feeds no tap
                h = layer(h.clone())
                if i in (1, 4, 7, 9, 11):
                    out.append(h.double().numpy())
        return out

    assert r1.value == pytest.approx(float(_lpips_by_hand(x0, x1, heads, taps).mean()), rel=1e-4)


def test_lpips_loader_rejects_wrong_tensors(alexnet_files, tmp_path):
    backbone_path, heads_path, *_ = alexnet_files
    sd = torch.load(backbone_path)
    sd["features.3.weight"] = torch.zeros(10, 10, 5, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ModelUnavailable, match="wrong shapes"):
        P.load_lpips(tmp_path / "bad.pth", heads_path)
    with pytest.raises(ModelUnavailable, match="missing"):
        P.load_lpips(backbone_path)  # no heads in this file
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ModelUnavailable):
        P.load_lpips(tmp_path / "junk.pth", heads_path)


# ============================================================================ Inception-v3 port (FID)
def test_fid_inception_structure():
    net = P.build_fid_inception()
    # Keras' InceptionV3 summary: 23,817,352 trainable parameters with its 1000-class top
    # (2,049,000) and BatchNorm without scale; torch's BatchNorm adds a scale per channel
    # (17,216 = half Keras' 34,432 non-trainable moving statistics).
    assert sum(p.numel() for p in net.parameters()) == 23_817_352 - 2_049_000 + 17_216
    keys = set(net.state_dict())
    for k in ("Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.running_var", "Mixed_5b.branch_pool.conv.weight",
              "Mixed_6e.branch7x7dbl_5.bn.bias", "Mixed_7a.branch7x7x3_4.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.weight"):
        assert k in keys
    assert net.Mixed_7c.max_pool and not net.Mixed_7b.max_pool


def test_fid_with_a_weight_file_in_pytorch_fid_layout(tmp_path, monkeypatch):
    # pytorch-fid resizes every input to 299×299 (about 5 s per image on 2 busy cores); the network is
    # fully convolutional, so the test runs the same layers at 80×80 (Inception's minimum is 75).
    monkeypatch.setattr(P, "FID_INPUT", 80)
    torch.manual_seed(1)
    net = P.build_fid_inception()
    for mod in net.modules():  # variance-preserving weights, so that 2048-D features depend on the input
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    sd = net.state_dict()
    for k, v in sd.items():  # non-trivial BatchNorm statistics
        if k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
        elif k.endswith("running_mean"):
            v.normal_(0.0, 0.1)
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)  # present in the real file
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(sd, path)
    loaded = P.load_fid_inception(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items() if not k.startswith("fc."))
    rng = np.random.default_rng(10)
    imgs = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    feats = P.inception_features(loaded, imgs)
    assert feats.shape == (2, 2048) and (feats >= 0).all() and np.isfinite(feats).all()
    # FID of a set with itself (two faces only: the covariance is singular) is 0; the public entry
    # (2 samples in 2048-D: the exact low-rank form; sqrtm of a 2048² matrix alone takes 15 s here)
    assert P.fid_from_features(feats, feats[::-1]) == pytest.approx(0.0, abs=1e-9)
    other = np.concatenate([imgs[:1], 255 - imgs[:1]])
    r = P.fid(imgs, other, path)  # the public entry: loads the file itself
    expected = P.fid_from_features(feats, np.concatenate([feats[:1], P.inception_features(loaded, 255 - imgs[:1])]))
    assert r.available and r.n == 2 and r.weights == str(path)
    assert r.value > 1e-3 and r.value == pytest.approx(expected, rel=1e-6)
    del sd["Mixed_6a.branch3x3.conv.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(ModelUnavailable, match="missing"):
        P.load_fid_inception(tmp_path / "broken.pth")


# ============================================================================ not available
def test_no_weights_means_not_available(tmp_path):
    imgs = np.zeros((2, 32, 32, 3), np.uint8)
    for r in (P.fid(imgs, imgs), P.lpips(imgs, imgs)):
        assert not r.available and r.value is None and r.reason.startswith("not available")
    missing = tmp_path / "nope.pth"
    r = P.fid(imgs, imgs, missing)
    assert not r.available and r.value is None and str(missing) in r.reason
    assert "--fid-weights" in r.reason and "--lpips-weights" in P.lpips(imgs, imgs, None).reason
    assert P.available(None) is False and P.available("") is False and P.available(tmp_path) is False
    (tmp_path / "w.pth").write_bytes(b"x")
    assert P.available(tmp_path / "w.pth") is True
    assert P.lpips(imgs, imgs, tmp_path / "w.pth", heads=missing).available is False
    assert r.to_dict()["value"] is None
