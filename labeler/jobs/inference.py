"""Batched inference over stored PNGs, shared by evaluate, predict and the 4A/4B threshold."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from labeler.jobs.samples import load_rgb
from ml_backend.detector.interface import Detector, ImagePrediction


def predict_paths(
    detector: Detector,
    home: Path,
    png_paths: Sequence[str],
    *,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> Iterator[list[ImagePrediction]]:
    """Yield predictions batch by batch, so callers can store each batch as it comes."""
    for start in range(0, len(png_paths), batch_size):
        batch = png_paths[start : start + batch_size]
        preds = detector.predict([load_rgb(home, p) for p in batch])
        if advance is not None:
            advance(len(batch))
        yield preds


def predict_all(
    detector: Detector,
    home: Path,
    png_paths: Sequence[str],
    *,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> list[ImagePrediction]:
    out: list[ImagePrediction] = []
    for preds in predict_paths(detector, home, png_paths, batch_size=batch_size, advance=advance):
        out.extend(preds)
    return out
