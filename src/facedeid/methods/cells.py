"""A grid of rectangular cells over a ROI (shared by pixelation and DP-Pix/DP-Blur)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CellGrid:
    """Cells of ``cell_w``×``cell_h`` pixels anchored at ``origin`` (ROI coordinates).

    ``labels`` gives each ROI pixel its cell index; ``counts`` the pixels per cell.
    """

    labels: np.ndarray
    counts: np.ndarray
    shape: tuple[int, int]  # cells down, cells across

    @classmethod
    def build(cls, roi_hw: tuple[int, int], origin: tuple[float, float], cell_w: float, cell_h: float) -> "CellGrid":
        h, w = roi_hw
        ox, oy = origin
        cx = np.floor((np.arange(w) + 0.5 - ox) / cell_w).astype(np.int64)
        cy = np.floor((np.arange(h) + 0.5 - oy) / cell_h).astype(np.int64)
        cx -= cx.min()
        cy -= cy.min()
        nx, ny = int(cx.max()) + 1, int(cy.max()) + 1
        labels = cy[:, None] * nx + cx[None, :]
        counts = np.bincount(labels.ravel(), minlength=nx * ny)
        return cls(labels=labels, counts=counts, shape=(ny, nx))

    def means(self, roi: np.ndarray) -> np.ndarray:
        """Per-cell, per-channel means, (n_cells, channels); empty cells get 0."""
        flat = roi.reshape(-1, roi.shape[2] if roi.ndim == 3 else 1).astype(np.float64)
        lab = self.labels.ravel()
        n = self.counts.size
        sums = np.stack([np.bincount(lab, weights=flat[:, c], minlength=n) for c in range(flat.shape[1])], axis=1)
        return sums / np.maximum(self.counts, 1)[:, None]

    def paint(self, values: np.ndarray, channels: int) -> np.ndarray:
        """An ROI image where every pixel takes its cell's value (values: (n_cells, channels))."""
        img = values[self.labels]
        return img if channels > 1 else img[..., 0]
