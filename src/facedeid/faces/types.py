"""Face records shared by every stage of the data path."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixel coordinates of the decoded (orientation-corrected) image.

    ``x0, y0`` is the top-left corner and ``x1, y1`` the bottom-right corner (exclusive), as floats.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def scaled(self, s: float) -> "Box":
        """Multiply every coordinate by ``s`` (maps boxes between image scales)."""
        return Box(self.x0 * s, self.y0 * s, self.x1 * s, self.y1 * s)

    def expanded(self, margin: float) -> "Box":
        """Grow the box by ``margin`` times its size on every side (0.1 = 10 %)."""
        dx, dy = self.width * margin, self.height * margin
        return Box(self.x0 - dx, self.y0 - dy, self.x1 + dx, self.y1 + dy)

    def clipped(self, width: int, height: int) -> "Box":
        return Box(
            min(max(self.x0, 0.0), width),
            min(max(self.y0, 0.0), height),
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
        )

    def iou(self, other: "Box") -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_int(self) -> tuple[int, int, int, int]:
        """Integer pixel bounds covering the box (floor of the start, ceil of the end)."""
        return (
            int(np.floor(self.x0)),
            int(np.floor(self.y0)),
            int(np.ceil(self.x1)),
            int(np.ceil(self.y1)),
        )

    def to_list(self) -> list[float]:
        return [round(float(v), 2) for v in (self.x0, self.y0, self.x1, self.y1)]


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in one image or video frame.

    ``landmarks5`` are dlib's five points (two corners of each eye and the point under the nose,
    in the order of ``shape_predictor_5_face_landmarks``), shape (5, 2), x/y in pixels.
    ``landmarks68`` are the iBUG-300W 68 points when requested, shape (68, 2).
    ``detector`` names the backend that found it (``union`` results keep the winning backend).
    """

    box: Box
    score: float
    landmarks5: np.ndarray
    landmarks68: np.ndarray | None = None
    detector: str = ""
    track_id: int | None = None
    extra: dict = field(default_factory=dict)

    def with_landmarks68(self, pts: np.ndarray) -> "Face":
        return replace(self, landmarks68=np.asarray(pts, dtype=np.float64))

    @property
    def eye_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres of the two eyes (image-left eye first) from the 5 points."""
        a = self.landmarks5[0:2].mean(axis=0)
        b = self.landmarks5[2:4].mean(axis=0)
        return (a, b) if a[0] <= b[0] else (b, a)

    def to_dict(self) -> dict:
        d = {
            "box": self.box.to_list(),
            "score": round(float(self.score), 4),
            "detector": self.detector,
            "landmarks5": np.round(self.landmarks5, 2).tolist(),
        }
        if self.landmarks68 is not None:
            d["landmarks68"] = np.round(self.landmarks68, 2).tolist()
        if self.track_id is not None:
            d["track_id"] = self.track_id
        return d
