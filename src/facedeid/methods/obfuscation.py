"""Classic obfuscation (book Ch. 3.1.1; parameters of Tables 4.1 and 5.1).

Sizes that are measured in pixels (the blur radius) are defined for a face 100 px wide — about the
size of a face in the book's 250×250 LFW images — and scaled with each face's width unless
``relative=false``; cell counts (pixelate, lowres) are relative to the face by definition.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from PIL import ImageColor

from ..faces.masks import FaceRegion
from ..faces.types import Face
from .base import Context, RegionMethod, RegionParams, register
from .cells import CellGrid

REFERENCE_FACE_WIDTH = 100.0


def face_scale(face: Face, relative: bool) -> float:
    """Factor turning a size given for a 100-px-wide face into pixels for ``face``."""
    return face.box.width / REFERENCE_FACE_WIDTH if relative else 1.0


@register
class Blur(RegionMethod):
    name: ClassVar[str] = "blur"
    reference: ClassVar[str] = "Ch. 3.1.1 (Gaussian blur); Tables 4.1, 5.1: r = 5, 20"
    summary: ClassVar[str] = "Gaussian blur of the face with standard deviation r"

    @dataclass(frozen=True)
    class Params(RegionParams):
        r: float = 5.0
        relative: bool = True

        def validate(self) -> None:
            if self.r <= 0:
                raise ValueError("r must be positive")

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        sigma = self.params.r * face_scale(face, self.params.relative)
        return cv2.GaussianBlur(roi, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


@register
class LowRes(RegionMethod):
    name: ClassVar[str] = "lowres"
    reference: ClassVar[str] = "Ch. 3.1.1 (down- then up-sampling, Ryoo et al.); Tables 4.1, 5.1: 7×7, 19×19"
    summary: ClassVar[str] = "down-sample the face to n×n pixels and up-sample it back (bilinear)"

    @dataclass(frozen=True)
    class Params(RegionParams):
        n: int = 7

        def validate(self) -> None:
            if self.n < 1:
                raise ValueError("n must be at least 1")

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        h, w = roi.shape[:2]
        sx = self.params.n / region.core_box.width
        sy = self.params.n / region.core_box.height
        small = cv2.resize(roi, (max(1, round(w * sx)), max(1, round(h * sy))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@register
class Pixelate(RegionMethod):
    name: ClassVar[str] = "pixelate"
    reference: ClassVar[str] = "Ch. 3.1.1 (pixelation / mosaic); Tables 4.1, 5.1: 4, 8, 16"
    summary: ClassVar[str] = "replace the face by n×n cells of their mean colour (or cells of `block` pixels)"

    @dataclass(frozen=True)
    class Params(RegionParams):
        n: int = 8
        block: int = 0  # cell side in pixels; overrides n when > 0

        def validate(self) -> None:
            if self.n < 1 or self.block < 0:
                raise ValueError("n must be ≥ 1 and block ≥ 0")

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        p = self.params
        cb = region.core_box
        cw, ch = (p.block, p.block) if p.block > 0 else (cb.width / p.n, cb.height / p.n)
        grid = CellGrid.build(roi.shape[:2], (cb.x0, cb.y0), cw, ch)
        channels = roi.shape[2] if roi.ndim == 3 else 1
        return grid.paint(grid.means(roi), channels)


@register
class Mask(RegionMethod):
    name: ClassVar[str] = "mask"
    reference: ClassVar[str] = "Ch. 3.1.1 (masking / blacking out)"
    summary: ClassVar[str] = "cover the face with a solid colour"

    @dataclass(frozen=True)
    class Params(RegionParams):
        color: str = "black"

        def validate(self) -> None:
            ImageColor.getrgb(self.color)

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        rgb = np.array(ImageColor.getrgb(self.params.color)[:3], dtype=np.uint8)
        return np.broadcast_to(rgb, roi.shape).copy()


@register
class Noise(RegionMethod):
    name: ClassVar[str] = "noise"
    reference: ClassVar[str] = "Ch. 3.1.1 (additive noise); Tables 4.1, 5.1: σ = 9, 10, 30, 49"
    summary: ClassVar[str] = "add Gaussian pixel noise of standard deviation sigma (0–255 scale)"

    @dataclass(frozen=True)
    class Params(RegionParams):
        sigma: float = 30.0

        def validate(self) -> None:
            if self.sigma < 0:
                raise ValueError("sigma must be ≥ 0")

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        noise = ctx.rng.normal(roi.shape, self.params.sigma)
        return np.clip(roi.astype(np.float64) + noise, 0, 255)
