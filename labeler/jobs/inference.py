"""Batched inference over stored PNGs, shared by evaluate, predict and the 4A/4B threshold.

Decoding can run in DataLoader worker processes while the model works on the previous batch
(`labeler predict --workers`). The batches are the same either way (same images, same order,
same size), so the predictions are too. A spawned worker imports this module, so it imports
only what decoding needs (not labeler.jobs.samples: torchvision and the database models would
cost each worker about 2 CPU-seconds).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from labeler.lock import exit_with_parent
from ml_backend.detector.interface import ImagePrediction, RGBImage

T = TypeVar("T")


class Predicts(Protocol[T]):
    """A detector (ImagePrediction) or the pre-label pipeline (prelabel.pipeline.Prelabel)."""

    def predict(self, images: Sequence[RGBImage]) -> list[T]: ...


def decode_png(home: Path, png_path: str) -> RGBImage:
    """A stored PNG as the models take it: the same pixels as labeler.jobs.samples.load_rgb."""
    with Image.open(home / png_path) as img:
        return np.asarray(img.convert("RGB"))


@dataclass(frozen=True)
class _PngFiles(Dataset[RGBImage]):
    """The stored PNGs by index; small and picklable, so spawned workers get it cheaply."""

    home: Path
    png_paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.png_paths)

    def __getitem__(self, index: int) -> RGBImage:
        return decode_png(self.home, self.png_paths[index])


def _as_list(batch: list[RGBImage]) -> list[RGBImage]:
    """Keep a batch as decoded arrays: the model takes numpy images, not stacked tensors."""
    return batch


def _worker_start(parent: int, worker_id: int) -> None:
    """A decoding worker must not outlive the job (kill -9 included)."""
    exit_with_parent(parent)


def worker_count(requested: int, n_images: int, batch_size: int) -> int:
    """Workers only pay off from the second batch on (the first waits for its decode anyway),
    and more workers than later batches would start for nothing."""
    batches = -(-n_images // batch_size)
    return max(0, min(requested, batches - 1))


def decoded_batches(
    home: Path, png_paths: Sequence[str], *, batch_size: int, workers: int = 0
) -> Iterator[list[RGBImage]]:
    """The images in batches, in order. With workers, they start decoding now (spawned, like
    every child of this project: nothing of the caller's state or locks is inherited), so the
    caller can load its model meanwhile; 0 decodes in this process, batch by batch."""
    files = _PngFiles(home, tuple(png_paths))
    n = worker_count(workers, len(files), batch_size)
    loader = DataLoader(
        files,
        batch_size=batch_size,
        shuffle=False,
        num_workers=n,
        collate_fn=_as_list,
        multiprocessing_context="spawn" if n else None,
        worker_init_fn=functools.partial(_worker_start, os.getpid()) if n else None,
    )
    return iter(loader)


def predict_batches(
    detector: Predicts[T],
    batches: Iterable[list[RGBImage]],
    *,
    advance: Callable[[int], None] | None = None,
) -> Iterator[list[T]]:
    """Yield predictions batch by batch, so callers can store each batch as it comes."""
    for batch in batches:
        preds = detector.predict(batch)
        if advance is not None:
            advance(len(batch))
        yield preds


def predict_paths(
    detector: Predicts[T],
    home: Path,
    png_paths: Sequence[str],
    *,
    batch_size: int,
    workers: int = 0,
    advance: Callable[[int], None] | None = None,
) -> Iterator[list[T]]:
    """Decode and predict batch by batch (see decoded_batches for `workers`)."""
    batches = decoded_batches(home, png_paths, batch_size=batch_size, workers=workers)
    return predict_batches(detector, batches, advance=advance)


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
