"""Lesion samples -> crops: preloaded once into memory, lightly augmented for training.

BUS-BRA images are small (about 300 x 400 pixels), so every crop is cut once and kept as uint8
(one grey channel when the image is grey: a third of the memory). Training needs pixels
beyond the crop for its jitter, so what is kept is a wider context window (CONTEXT times the
crop's side, same centre); evaluation takes its centre, which is the crop crops.crop_lesion
would cut (up to resampling: the context is resized once, not the crop).

Augmentations are ultrasound-safe: a small rotation (+-10 degrees), horizontal flip, jitter of
the window's scale and centre (a random resized crop around the box), brightness and contrast.
No vertical flip (the near field is always at the top) and no hue (the images are grey).
They run batched, as one affine grid_sample over a batch of context windows on the training
device (per-crop torchvision calls on the CPU cost more than a ResNet-18 step on a GPU), and
the training engine keeps every context window on that device: a batch is an index, not a copy
through a DataLoader.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from core.birads import Birads
from ml_backend.detector.interface import Box, RGBImage
from ml_backend.encoder.crops import crop_lesion
from ml_backend.encoder.sampler import group_by_lesion
from ml_backend.encoder.targets import birads_score

CONTEXT = 1.25  # context side / crop side: room for the scale and shift jitter below
SCALE = (0.85, 1.15)  # window side, relative to the crop's
SHIFT = 0.05  # window centre moves up to this fraction of the crop side
ROTATION = 10.0  # degrees
NO_CLASS = -1  # the class of a lesion without pathology (reader labels): no CE term


@dataclass(frozen=True)
class LesionSample:
    """One lesion box on one image, with what identifies it across views and patients."""

    image_id: int
    png_path: str  # relative to LABELER_HOME
    box: Box  # pixel xyxy
    lesion_key: str  # shared by the views of one lesion; unique per box when unknown
    patient_key: str
    fold: int
    pathology: int | None  # 0 benign, 1 malignant, None unknown
    birads: Birads | None
    view: str | None
    split: str
    source: str = "reference"  # or "accepted" (a reader consensus label)


# crop, lesion, instance (the sample: one box of one image), class, BI-RADS score
Item = tuple[torch.Tensor, int, int, int, float]


def context_size(size: int) -> int:
    """The stored context side: about CONTEXT * size, with an even border around the crop."""
    return size + 2 * math.ceil(size * (CONTEXT - 1) / 2)


def _context_margin(margin: float, size: int) -> float:
    """The margin whose square window is context_size/size times the crop's window."""
    ratio = context_size(size) / size
    return (ratio * (1 + 2 * margin) - 1) / 2


def read_rgb(path: Path) -> RGBImage:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _context(pixels: RGBImage, box: Box, *, size: int, margin: float) -> torch.Tensor:
    ctx = crop_lesion(
        pixels, box, margin=_context_margin(margin, size), size=context_size(size), square=True
    )
    stored = (ctx * 255).round().clamp(0, 255).to(torch.uint8)
    grey = bool((stored[0] == stored[1]).all() and (stored[1] == stored[2]).all())
    return stored[:1].clone() if grey else stored


def preload_contexts(
    samples: Sequence[LesionSample],
    home: Path,
    *,
    size: int,
    margin: float,
    workers: int = 4,
    on_loaded: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Every sample's context window as uint8 C x S' x S' (S' = context_size(size))."""

    def load(sample: LesionSample) -> torch.Tensor:
        crop = _context(read_rgb(home / sample.png_path), sample.box, size=size, margin=margin)
        if on_loaded is not None:
            on_loaded(1)
        return crop

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL decodes without the GIL
        return list(pool.map(load, samples))


def centre_crop(context: torch.Tensor, size: int) -> torch.Tensor:
    border = (context.shape[-1] - size) // 2
    return context[..., border : border + size, border : border + size]


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _affine(n: int, size: int, context: int, generator: torch.Generator | None) -> torch.Tensor:
    """N x 2 x 3 sampling matrices (output crop -> context, normalised coordinates): rotation
    about the centre, window scale and shift, horizontal flip."""
    angle = torch.deg2rad(_uniform(n, -ROTATION, ROTATION, generator))
    angle = torch.where(torch.rand(n, generator=generator) < 0.5, angle, 0.0)
    scale = _uniform(n, *SCALE, generator) * size / context
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    shift = _uniform(2 * n, -SHIFT, SHIFT, generator).reshape(n, 2) * 2 * size / context
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    rows = [cos * flip, -sin, shift[:, 0], sin * flip, cos, shift[:, 1]]
    return torch.stack(rows, dim=1).reshape(n, 2, 3)


def augment_batch(
    contexts: torch.Tensor, size: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random training crops (float N x C x size x size in [0, 1]) from uint8 N x C x S' x S'
    context windows, in one grid_sample on whatever device the contexts are on.

    Random numbers are drawn on the CPU from `generator` (torch's global one if None), so a
    seeded run is the same on every device.
    """
    n, c = contexts.shape[:2]
    theta = _affine(n, size, contexts.shape[-1], generator).to(contexts.device)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    image = F.grid_sample(contexts.float() / 255, grid, mode="bilinear", align_corners=False)
    bright = _uniform(n, 0.75, 1.25, generator).to(contexts.device).view(n, 1, 1, 1)
    contrast = _uniform(n, 0.85, 1.15, generator).to(contexts.device).view(n, 1, 1, 1)
    image = (image * bright).clamp(0, 1)
    mean = image.mean(dim=(1, 2, 3), keepdim=True)  # adjust_contrast's grey mean
    return (contrast * image + (1 - contrast) * mean).clamp(0, 1)


def augment(context: torch.Tensor, size: int) -> torch.Tensor:
    """One random training crop (float C x size x size) from a uint8 context window."""
    return augment_batch(context[None], size)[0]


def lesion_indices(samples: Sequence[LesionSample]) -> list[int]:
    """Each sample's lesion as a dense int (first-seen order), for the losses' id tensors."""
    ids: dict[str, int] = {}
    return [ids.setdefault(s.lesion_key, len(ids)) for s in samples]


def lesion_groups(samples: Sequence[LesionSample]) -> list[list[int]]:
    """Sample indices per lesion: what the P x K sampler draws from."""
    keys: list[Hashable | None] = [s.lesion_key for s in samples]
    return group_by_lesion(keys)


class LesionCropDataset(Dataset[Item]):
    """Preloaded lesion crops; `augment` draws a fresh random crop on every access."""

    def __init__(
        self,
        samples: Sequence[LesionSample],
        contexts: Sequence[torch.Tensor],
        *,
        size: int,
        augment: bool,
    ) -> None:
        if len(samples) != len(contexts):
            raise ValueError(f"{len(samples)} samples but {len(contexts)} crops")
        self.samples, self.contexts = list(samples), list(contexts)
        self.size, self.augment = size, augment
        self.lesions = lesion_indices(self.samples)

    @classmethod
    def load(
        cls,
        samples: Sequence[LesionSample],
        home: Path,
        *,
        size: int,
        margin: float,
        augment: bool,
        workers: int = 4,
    ) -> LesionCropDataset:
        contexts = preload_contexts(samples, home, size=size, margin=margin, workers=workers)
        return cls(samples, contexts, size=size, augment=augment)

    def subset(self, indices: Sequence[int], *, augment: bool) -> LesionCropDataset:
        """Some of the samples, sharing the preloaded crops (no copy, no reload)."""
        picked = [self.samples[i] for i in indices]
        return LesionCropDataset(
            picked, [self.contexts[i] for i in indices], size=self.size, augment=augment
        )

    def __len__(self) -> int:
        return len(self.samples)

    def stacked(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """All context windows as one uint8 N x C x S' x S' tensor on `device` (C = 1 when
        every image is grey; grey windows are repeated to 3 channels otherwise)."""
        channels = max(c.shape[0] for c in self.contexts)
        return torch.stack([c.expand(channels, -1, -1) for c in self.contexts]).to(device)

    def crop(self, index: int) -> torch.Tensor:
        """Float 3 x size x size in [0, 1]: augmented, or the exact centre crop."""
        context = self.contexts[index]
        if self.augment:
            image = augment(context, self.size)
        else:
            image = centre_crop(context, self.size).float() / 255
        return image.expand(3, -1, -1) if image.shape[0] == 1 else image

    def targets(self, index: int) -> tuple[int, int, int, float]:
        """(lesion, instance, class, BI-RADS score): what the losses compare."""
        sample = self.samples[index]
        cls = NO_CLASS if sample.pathology is None else sample.pathology
        score = math.nan if sample.birads is None else birads_score(sample.birads)
        return self.lesions[index], index, cls, score

    def __getitem__(self, index: int) -> Item:
        return self.crop(index), *self.targets(index)
