"""Batched inference over stored PNGs, shared by evaluate, predict and the 4A/4B threshold."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from labeler.jobs.samples import load_rgb
from ml_backend.detector.interface import ImagePrediction, RGBImage

T = TypeVar("T")


class Predicts(Protocol[T]):
    """A detector (ImagePrediction) or the pre-label pipeline (prelabel.pipeline.Prelabel)."""

    def predict(self, images: Sequence[RGBImage]) -> list[T]: ...


def predict_paths(
    detector: Predicts[T],
    home: Path,
    png_paths: Sequence[str],
    *,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> Iterator[list[T]]:
    """Yield predictions batch by batch, so callers can store each batch as it comes."""
    for start in range(0, len(png_paths), batch_size):
        batch = png_paths[start : start + batch_size]
        preds = detector.predict([load_rgb(home, p) for p in batch])
        if advance is not None:
            advance(len(batch))
        yield preds


def predict_all(
    detector: Predicts[ImagePrediction],
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
