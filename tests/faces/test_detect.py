import numpy as np
import pytest

from facedeid.bench.datasets import pascal_ground_truth
from facedeid.bench.detection import match
from facedeid.errors import BadArguments
from facedeid.faces.detect import backends, detect, fuse, nms
from facedeid.faces.types import Box
from facedeid.media.images import read_image


@pytest.mark.parametrize("backend", ["hog", "centerface", "union"])
def test_lfw_centred_face_found(backend, lfw_sample):
    found = 0
    for p in lfw_sample:
        img = read_image(p).rgb
        faces = detect(img, backend)
        found += any(f.box.x0 < 125 < f.box.x1 and f.box.y0 < 125 < f.box.y1 for f in faces)
    assert found >= 19, f"{backend}: {found}/20"


def test_every_face_has_five_landmarks_inside_box(face_image):
    faces = detect(face_image, "union", with_68=True)
    assert len(faces) >= 1
    f = max(faces, key=lambda x: x.box.area)
    assert f.landmarks5.shape == (5, 2) and f.landmarks68.shape == (68, 2)
    b = f.box.expanded(0.2)
    assert np.all((f.landmarks5[:, 0] > b.x0) & (f.landmarks5[:, 0] < b.x1))
    assert np.all((f.landmarks5[:, 1] > b.y0) & (f.landmarks5[:, 1] < b.y1))


def test_union_recall_on_annotated_group_photos():
    gt = pascal_ground_truth()
    hits = total = 0
    for path, boxes in gt.items():
        faces = detect(read_image(path).rgb, "union")
        h, _ = match(boxes, [f.box for f in faces])
        hits += h
        total += len(boxes)
    assert total == 43
    assert hits / total >= 0.9


def test_large_image_is_downscaled_and_mapped_back(face_image):
    big = np.kron(face_image, np.ones((8, 8, 1), dtype=np.uint8))  # 2000×2000
    small_faces = detect(face_image, "hog")
    big_faces = detect(big, "hog")
    assert len(big_faces) == len(small_faces) >= 1
    a, b = small_faces[0].box, big_faces[0].box
    assert a.iou(b.scaled(1 / 8)) > 0.7


def test_no_face_in_blank_image():
    assert detect(np.full((300, 300, 3), 128, np.uint8), "union") == []


def test_unknown_detector_is_rejected():
    with pytest.raises(BadArguments):
        detect(np.zeros((50, 50, 3), np.uint8), "nope")


def test_registry_lists_backends():
    assert {"hog", "cnn", "haar", "centerface"} <= set(backends())


def test_nms_and_fuse():
    a, b, c = Box(0, 0, 10, 10), Box(1, 1, 11, 11), Box(50, 50, 60, 60)
    assert len(nms([(a, 0.9), (b, 0.8), (c, 0.5)], 0.3)) == 2
    fused = fuse({"x": [(a, 1.0)], "y": [(b, 0.5), (c, 0.5)]})
    assert [f[2] for f in fused] == ["x", "y"]
