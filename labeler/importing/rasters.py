"""Pixels in, 8-bit PNG out. Writing from a bare array drops source chunks (text, ICC, EXIF)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from core.errors import BadInputError

Pixels = npt.NDArray[np.uint8]


class UnreadableImageError(BadInputError):
    """The file is not an image we can decode; a per-file problem of an import."""


class TooManyPixelsError(UnreadableImageError):
    """Refused from the header alone: decoding it could take gigabytes and minutes."""


def check_pixels(width: int, height: int, *, limit: int, frames: int = 1) -> None:
    """Refuse before decoding when width x height (x frames decoded) exceeds the limit."""
    if width * height * max(frames, 1) > limit:
        what = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
        raise TooManyPixelsError(
            f"image is {what} pixels, over the limit of {limit:,} "
            "(LABELER_MAX_IMAGE_PIXELS); not decoded"
        )


def read_raster(path: Path, *, max_pixels: int) -> Pixels:
    """Read the header, refuse too many pixels, then decode fully (a truncated file fails here,
    not later) into 8-bit L or RGB. Messages never quote the path."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # lazy: reads the header only
                check_pixels(img.width, img.height, limit=max_pixels)
                img.load()
                return to_8bit(img)
    except Image.DecompressionBombError:
        raise TooManyPixelsError(
            f"image is over {max_pixels:,} pixels (LABELER_MAX_IMAGE_PIXELS); not decoded"
        ) from None
    except UnidentifiedImageError:
        raise UnreadableImageError("cannot decode image: not a known image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, UnreadableImageError):
            raise
        raise UnreadableImageError(f"cannot decode image: {_without(path, str(exc))}") from None


def _without(path: Path, text: str) -> str:
    """An exception text with the file's path and name taken out."""
    for shown in (str(path.resolve()), str(path), path.name):
        if shown:
            text = text.replace(shown, "<file>")
    return text


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
    """Write atomically (temp + rename) so a killed import never leaves half a PNG; a failed
    write (disk full) removes its temp file. Returns the PIL mode."""
    img = Image.fromarray(pixels)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        img.save(tmp, format="PNG", compress_level=3)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return img.mode
