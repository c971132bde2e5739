"""Shared fixtures: the real face data in ../shared/data (never copied into the repository)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facedeid.bench.datasets import data_root, lfw_images
from facedeid.media.images import read_image


@pytest.fixture(scope="session")
def data() -> Path:
    return data_root()


@pytest.fixture(scope="session")
def lfw_sample(data: Path) -> list[Path]:
    """20 LFW images of 20 different people, spread over the alphabet."""
    people = sorted((data / "lfw" / "images").iterdir())
    step = max(1, len(people) // 20)
    return [sorted(p.glob("*.jpg"))[0] for p in people[::step]][:20]


@pytest.fixture(scope="session")
def face_image(data: Path) -> np.ndarray:
    return read_image(data / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg").rgb
