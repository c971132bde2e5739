import numpy as np

from facedeid.faces.align import align_matrix, crop_to_roi, transform_points, umeyama, warp_to_crop
from facedeid.faces.detect import detect


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ rot.T + t
    m = umeyama(src, dst)
    assert np.allclose(m[:2, :2], s * rot, atol=1e-9) and np.allclose(m[:2, 2], t, atol=1e-9)


def test_umeyama_without_scale_is_a_rotation():
    src = np.array([[0, 0], [1, 0], [0, 1.0]])
    m = umeyama(src, src * 3, estimate_scale=False)
    assert np.isclose(np.linalg.det(m[:2, :2]), 1.0)


def test_alignment_round_trip(face_image):
    face = max(detect(face_image, "hog"), key=lambda f: f.box.area)
    crop, m = warp_to_crop(face_image, face, 128)
    # the landmarks land at the template, and back-warping the crop reproduces the face region
    pts = transform_points(m, face.landmarks5)
    assert np.all((pts > 0) & (pts < 128))
    x0, y0, x1, y1 = (int(v) for v in face.box.as_int())
    back = crop_to_roi(crop, m, (x0, y0, x1, y1)).astype(float)
    orig = face_image[y0:y1, x0:x1].astype(float)
    inner = (slice(10, -10), slice(10, -10))
    assert np.mean(np.abs(back[inner] - orig[inner])) < 6.0
    assert np.allclose(np.linalg.inv(align_matrix(face, 128)) @ m, np.eye(3), atol=1e-9)
