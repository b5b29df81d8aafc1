"""Text burned into the pixels (names, ages, dates on ultrasound frames), found with Tesseract.

Runs in the import's worker processes, on the pixels about to become the stored PNG, so a
redaction blacks the regions out before the PNG is ever written. The recognised words never
leave this module: only where they are (int xyxy in the stored PNG's pixels) and how many.

Speed: Tesseract in-process (tesserocr; one engine per worker process, loaded once), sparse-text
mode, one thread, on a copy no larger than MAX_SIDE: about 0.06 CPU-seconds per bundled frame.
A found word must be confident and look like a word or a number, so speckle read as "=" or
"ot" does not count; every word on the same line goes with it (the "66" beside "ANOS").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from core.errors import JobFailedError
from db.schemas import PixelText
from labeler.importing.rasters import Pixels

Box = tuple[int, int, int, int]
MAX_SIDE = 1600  # larger frames are scanned downscaled: burned-in text is tens of pixels high
MIN_CONFIDENCE = 70.0
PAD = 3  # pixels around each region, in the stored image
TIMEOUT_MS = 30_000
LANGUAGE = "eng"
_TESSDATA = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)


class OcrFailedError(JobFailedError):
    """The engine did not answer for this image (error, timeout): text was not checked."""


def tessdata() -> Path | None:
    """Where the language data is: $TESSDATA_PREFIX, else Debian's (tesseract-ocr) and others."""
    prefix = os.environ.get("TESSDATA_PREFIX")
    for folder in ([prefix] if prefix else []) + list(_TESSDATA):
        if (Path(folder) / f"{LANGUAGE}.traineddata").is_file():
            return Path(folder)
    return None


def find_engine(mode: str) -> str | None:
    """The engine's name and version when OCR is on and usable here, else None."""
    if mode == "off" or tessdata() is None:
        return None
    try:
        import tesserocr

        return "tesseract " + str(tesserocr.tesseract_version().split()[1])
    except Exception:  # not installed or broken: the summary says "not checked"
        return None


def check_text(pixels: Pixels, *, engine: str | None, redact: bool) -> tuple[Pixels, PixelText]:
    """Look for text; with `redact`, return pixels with the regions blacked out."""
    if engine is None:
        return pixels, PixelText(checked=False)
    regions = find_text(pixels)
    if redact and regions:
        return redacted(pixels, regions), PixelText(
            checked=True, engine=engine, regions=regions, redacted=True
        )
    return pixels, PixelText(checked=True, engine=engine, regions=regions)


def find_text(pixels: Pixels) -> tuple[Box, ...]:
    """Boxes (xyxy, in `pixels`) of the words on lines that hold a confident word.

    Two scans: the frame as it is (small annotation text), and a median-filtered half-size copy
    (large text on a grainy background, where Tesseract's binarisation sees only noise).
    """
    gray = pixels if pixels.ndim == 2 else np.asarray(Image.fromarray(pixels).convert("L"))
    height, width = gray.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    img = Image.fromarray(gray)
    if scale < 1.0:
        img = img.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    boxes: set[Box] = set()
    for copy, factor in (
        (img, scale),
        (img.filter(ImageFilter.MedianFilter(3)).reduce(2), scale / 2),
    ):
        for line in _lines(copy):
            if any(_confident(word, conf) for word, conf, _ in line):
                boxes.update(_scaled(box, factor, width, height) for _, _, box in line)
    return tuple(sorted(boxes))


def redacted(pixels: Pixels, regions: tuple[Box, ...]) -> Pixels:
    out = pixels.copy()
    for x0, y0, x1, y1 in regions:
        out[y0:y1, x0:x1] = 0
    return out


def _confident(word: str, conf: float) -> bool:
    letters = sum(c.isalpha() for c in word)
    digits = sum(c.isdigit() for c in word)
    return conf >= MIN_CONFIDENCE and (letters >= 3 or digits >= 2)


def _lines(img: Image.Image) -> list[list[tuple[str, float, Box]]]:
    """(word, confidence, box) per text line, in the scanned copy's pixels."""
    try:
        import tesserocr

        api = _api()
    except Exception as exc:  # the engine will not load in this process
        raise OcrFailedError(type(exc).__name__) from None
    lines: list[list[tuple[str, float, Box]]] = []
    try:
        api.SetImage(img)
        with _quiet_stderr():  # leptonica prints "Error in boxClipToRectangle" for speckle
            done = api.Recognize(timeout=TIMEOUT_MS)
        if not done:
            raise OcrFailedError("timeout")
        iterator = api.GetIterator()
        level = tesserocr.RIL.WORD
        for word in tesserocr.iterate_level(iterator, level):
            if not lines or word.IsAtBeginningOf(tesserocr.RIL.TEXTLINE):
                lines.append([])
            if word.Empty(level):
                continue
            try:
                text = word.GetUTF8Text(level).strip()
            except RuntimeError:  # "No text returned" for a blob it gave up on
                continue
            if text:
                lines[-1].append((text, float(word.Confidence(level)), word.BoundingBox(level)))
    except OcrFailedError:
        raise
    except Exception as exc:
        raise OcrFailedError(type(exc).__name__) from None
    finally:
        api.Clear()
    return lines


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (the C library writes there)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@cache
def _api() -> Any:
    """One engine per process (loading the model costs about 0.1 s)."""
    # One OpenMP thread for Tesseract: the import's worker pool already uses every core. Only
    # while it loads: left in os.environ, it would throttle torch here and in every child process.
    before = os.environ.get("OMP_THREAD_LIMIT")
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        import tesserocr

        return tesserocr.PyTessBaseAPI(
            path=str(tessdata()),
            lang=LANGUAGE,
            psm=tesserocr.PSM.SPARSE_TEXT,  # annotations are scattered words, not paragraphs
            oem=tesserocr.OEM.LSTM_ONLY,
        )
    finally:
        if before is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = before


def _scaled(box: Box, scale: float, width: int, height: int) -> Box:
    x0, y0, x1, y1 = (v / scale for v in box)
    return (
        max(0, int(x0) - PAD),
        max(0, int(y0) - PAD),
        min(width, int(np.ceil(x1)) + PAD),
        min(height, int(np.ceil(y1)) + PAD),
    )
