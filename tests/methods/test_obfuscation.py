import numpy as np
import pytest
from scipy import ndimage

from facedeid.faces.detect import detect
from facedeid.faces.masks import face_region
from facedeid.methods import Context, get_method, registry
from facedeid.identity.recognizers import DlibRecognizer, distance
from facedeid.privacy.randomness import PrivacyRandom
from facedeid.errors import BadArguments

ALL = ["blur", "lowres", "pixelate", "mask", "noise", "dp-pix", "dp-blur", "dp-svd"]


@pytest.fixture(scope="module")
def faces(face_image):
    return detect(face_image, "union", with_68=True)


def test_all_obfuscation_methods_registered():
    assert set(ALL) <= set(registry())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("region", ["ellipse", "box", "hull"])
def test_face_changes_and_outside_stays_identical(name, region, face_image, faces):
    m = get_method(name, {"region": region})
    out = m.apply(face_image, faces, Context(rng=PrivacyRandom(1))).image
    assert out.shape == face_image.shape and out.dtype == np.uint8
    support = np.zeros(face_image.shape[:2], bool)
    for f in faces:
        r = face_region(f, face_image.shape, region, m.params.margin, m.params.feather)
        support[r.slices] |= r.alpha > 0
        core = np.zeros_like(support)
        core[r.slices] = r.core
        diff = np.abs(out.astype(int) - face_image.astype(int)).sum(-1)
        assert diff[core].mean() > 3, f"{name}/{region}: face region barely changed"
    outside = ~ndimage.binary_dilation(support, iterations=1)
    assert np.array_equal(out[outside], face_image[outside])


@pytest.mark.parametrize("spec", [{"name": "pixelate", "n": "8"}, {"name": "blur", "r": "20"}, {"name": "mask"}, {"name": "dp-pix", "epsilon": "1"}])
def test_strong_obfuscation_breaks_dlib_verification(spec, lfw_sample):
    rec = DlibRecognizer()
    spec = dict(spec)
    m = get_method(spec.pop("name"), spec)
    dists = []
    from facedeid.media.images import read_image

    for p in lfw_sample[:8]:
        img = read_image(p).rgb
        fs = [f for f in detect(img, "hog")][:1]
        if not fs:
            continue
        out = m.apply(img, fs, Context()).image
        dists.append(distance(rec.embed(img, fs), rec.embed(out, fs), "euclidean")[0])
    assert len(dists) >= 6
    assert np.mean(np.array(dists) > rec.threshold) >= 0.5, dists


def test_pixelate_cells_are_flat(face_image, faces):
    out = get_method("pixelate", {"n": "4", "region": "box", "feather": "0"}).apply(face_image, faces[:1], Context()).image
    f = faces[0]
    r = face_region(f, face_image.shape, "box", 0.1, 0.0)
    roi = out[r.slices][r.core]
    assert len(np.unique(roi.reshape(-1, 3), axis=0)) <= 36  # 4×4 cells (+ partial edge cells)


def test_noise_uses_secure_randomness_by_default(face_image, faces):
    m = get_method("noise")
    a = m.apply(face_image, faces, Context()).image
    b = m.apply(face_image, faces, Context()).image
    assert not np.array_equal(a, b)
    s1 = m.apply(face_image, faces, Context(rng=PrivacyRandom(7))).image
    s2 = m.apply(face_image, faces, Context(rng=PrivacyRandom(7))).image
    assert np.array_equal(s1, s2)


def test_bad_parameters_are_rejected():
    with pytest.raises(BadArguments):
        get_method("blur", {"r": "-1"})
    with pytest.raises(BadArguments):
        get_method("blur", {"radius": "3"})
    with pytest.raises(BadArguments):
        get_method("pixelate", {"n": "many"})
    with pytest.raises(BadArguments):
        get_method("mask", {"region": "square"})
