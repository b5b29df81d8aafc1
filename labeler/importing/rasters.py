"""Pixels in, 8-bit PNG out. Writing from a bare array drops source chunks (text, ICC, EXIF)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

Pixels = npt.NDArray[np.uint8]


class UnreadableImageError(ValueError):
    pass


def read_raster(path: Path) -> Pixels:
    """Decode a PNG/JPEG fully (a truncated file fails here, not later) into 8-bit L or RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_8bit(img)
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(f"image too large to be an ultrasound frame ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(f"cannot decode image: {exc}") from None


def to_8bit(img: Image.Image) -> Pixels:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return scale_to_uint8(np.asarray(img, dtype=np.float64))
    if img.mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1"):
        img = img.convert("RGB" if img.mode not in ("LA", "1") else "L")
    arr = np.asarray(img, dtype=np.uint8)
    return collapse_gray(arr)


def scale_to_uint8(arr: npt.NDArray[np.float64]) -> Pixels:
    """Min-max to 0..255; for data whose display window is unknown (no VOI LUT)."""
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def collapse_gray(arr: Pixels) -> Pixels:
    """RGB whose channels are equal is grayscale: store it as one channel."""
    if arr.ndim == 3 and arr.shape[2] == 3:
        r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
        if np.array_equal(r, g) and np.array_equal(g, b):
            return np.ascontiguousarray(r)
    return arr


def write_png(pixels: Pixels, dest: Path) -> str:
    """Write atomically (temp + rename) so a killed import never leaves half a PNG; return mode."""
    img = Image.fromarray(pixels)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    img.save(tmp, format="PNG", compress_level=3)
    os.replace(tmp, dest)
    return img.mode
