"""Speed of the PyTorch port of dlib's face recognition ResNet against dlib itself, on the same LFW faces.

Both sides are timed end to end from the image and its 5 landmarks: chip extraction plus the network.
dlib runs ``compute_face_descriptor`` once per image (as ``DlibRecognizer`` does) with its own threading;
the port runs at batch sizes 1 and 32 with 1 and 2 torch threads. dlib is timed first: on a small machine
the idle-spinning worker threads of one library slow the other down when their calls alternate.

    .venv/bin/python benchmarks/torch_dlib_speed.py [--faces 64]
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import dlib
import numpy as np
import torch

from facedeid.bench.datasets import lfw_images
from facedeid.identity.torch_dlib import chips_to_tensor, face_chips, load_dlib_resnet
from facedeid.media.images import read_image
from facedeid.models import dlib_model_path


@dataclass
class Sample:
    image: np.ndarray
    shapes: dlib.full_object_detections
    points: list[np.ndarray]


def load_faces(count: int) -> list[Sample]:
    """LFW images (every 7th, over many people) until ``count`` faces: HOG detector upsample 1, 5 points."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape5")))
    samples: list[Sample] = []
    for path in lfw_images()[::7]:
        image = read_image(path).rgb
        shapes = dlib.full_object_detections()
        for box in detector(image, 1):
            shapes.append(predictor(image, box))
        if len(shapes):
            points = [np.array([[p.x, p.y] for p in s.parts()], dtype=np.float64) for s in shapes]
            samples.append(Sample(image, shapes, points))
        if sum(len(s.points) for s in samples) >= count:
            break
    return samples


def time_dlib(samples: list[Sample]) -> tuple[float, float]:
    """Faces per second and CPU cores used (process CPU time / wall time)."""
    net = dlib.face_recognition_model_v1(str(dlib_model_path("resnet")))
    net.compute_face_descriptor(samples[0].image, samples[0].shapes)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for s in samples:
        net.compute_face_descriptor(s.image, s.shapes)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return sum(len(s.points) for s in samples) / wall, cpu / wall


def _run_torch(model: torch.nn.Module, samples: list[Sample], batch: int) -> None:
    pending: list[np.ndarray] = []
    with torch.inference_mode():
        for s in samples:
            pending.extend(face_chips(s.image, s.points))
            while len(pending) >= batch:
                model(chips_to_tensor(np.stack(pending[:batch])))
                pending = pending[batch:]
        if pending:
            model(chips_to_tensor(np.stack(pending)))


def time_torch(model: torch.nn.Module, samples: list[Sample], batch: int, threads: int) -> float:
    """Faces per second of chip extraction plus the torch network."""
    torch.set_num_threads(threads)
    _run_torch(model, samples[:4], batch)  # warm-up
    start = time.perf_counter()
    _run_torch(model, samples, batch)
    return sum(len(s.points) for s in samples) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=64, help="number of LFW faces to time (default 64)")
    args = parser.parse_args()
    samples = load_faces(args.faces)
    faces = sum(len(s.points) for s in samples)
    dlib_fps, dlib_cores = time_dlib(samples)
    model = load_dlib_resnet()
    rows: list[tuple[str, str, str, float]] = [
        ("dlib compute_face_descriptor", "per image", f"own ({dlib_cores:.1f} cores)", dlib_fps)
    ]
    for threads in (1, 2):
        for batch in (1, 32):
            rows.append(("torch port", str(batch), str(threads), time_torch(model, samples, batch, threads)))
    print(f"{faces} LFW faces, {os.cpu_count()} CPUs, torch {torch.__version__}, dlib {dlib.__version__}")
    print(f"{'implementation':<30}{'batch':>10}{'threads':>20}{'faces/s':>10}{'vs dlib':>9}")
    for name, batch_label, threads_label, fps in rows:
        print(f"{name:<30}{batch_label:>10}{threads_label:>20}{fps:>10.1f}{fps / dlib_fps:>8.2f}x")


if __name__ == "__main__":
    main()
