"""Lesion crops: the pixel xyxy box plus a margin, clipped to the image, resized to size x size.

By default the window is made square around the box centre and the part that falls outside
the image is zero-padded (ultrasound surroundings are black) instead of stretched: squashing a
box to a square would erase its aspect ratio, and "taller than wide" orientation is a BI-RADS
malignancy feature. square=False crops the clipped box + margin and resizes it as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ml_backend.detector.interface import Box, RGBImage

ImageLike = Image.Image | torch.Tensor | RGBImage


@dataclass(frozen=True)
class CropWindow:
    """Integer pixel window inside the image, and the zero padding around it (left, top, ...)."""

    x0: int
    y0: int
    x1: int
    y1: int
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom (F.pad's order)


def _span(centre: float, half: float, limit: int) -> tuple[int, int, int, int]:
    """A [lo, hi) pixel span of width ceil(2*half) around centre, clipped to [0, limit)."""
    side = max(1, math.ceil(2 * half))
    lo = math.floor(centre - side / 2)
    hi = lo + side
    clipped_lo, clipped_hi = max(lo, 0), min(hi, limit)
    if clipped_hi <= clipped_lo:
        raise ValueError(f"box span [{lo}, {hi}) lies outside the image (0..{limit})")
    return clipped_lo, clipped_hi, clipped_lo - lo, hi - clipped_hi


def crop_window(
    box: Box, width: int, height: int, *, margin: float = 0.1, square: bool = True
) -> CropWindow:
    """The window for `box` with `margin` (fraction of the longer box side) on every side."""
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {box} is not xyxy with x0 <= x1 and y0 <= y1")
    pad = margin * max(x1 - x0, y1 - y0)
    half_w, half_h = (x1 - x0) / 2 + pad, (y1 - y0) / 2 + pad
    if square:
        half_w = half_h = max(half_w, half_h)
    left, right, pad_l, pad_r = _span((x0 + x1) / 2, half_w, width)
    top, bottom, pad_t, pad_b = _span((y0 + y1) / 2, half_h, height)
    pads = (pad_l, pad_r, pad_t, pad_b) if square else (0, 0, 0, 0)
    return CropWindow(left, top, right, bottom, pads)


def to_chw(image: ImageLike) -> torch.Tensor:
    """PIL, numpy HxW(x3) or tensor (C)xHxW -> float 3 x H x W in [0, 1] (grey is repeated)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        arr = image[:, :, None] if image.ndim == 2 else image[:, :, :3]
        tensor = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)  # writable
    else:
        tensor = image[None] if image.ndim == 2 else image
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255
    return tensor.float()


def crop_lesion(
    image: ImageLike, box: Box, *, margin: float = 0.1, size: int = 224, square: bool = True
) -> torch.Tensor:
    """The lesion crop as float 3 x size x size in [0, 1]."""
    pixels = to_chw(image)
    win = crop_window(box, pixels.shape[2], pixels.shape[1], margin=margin, square=square)
    patch = F.pad(pixels[:, win.y0 : win.y1, win.x0 : win.x1], win.pad)
    resized = F.interpolate(patch[None], size=(size, size), mode="bilinear", antialias=True)
    return resized[0]
