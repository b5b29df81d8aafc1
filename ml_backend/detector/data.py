"""Training samples -> tensors, with the paper's augmentations (flip, rotation, brightness).

By default only horizontal flips: ultrasound has a fixed near field at the top, so vertical flips
would teach the model images it never sees. Rotations are small (+-10 degrees) for the same
reason. The paper's up-down flips are the "paper" setting, measured in bench/prelabel_quality.py.

Each sample draws its augmentation from its own seed (the epoch's seed and the sample's index),
which its target carries on to the anchor and RoI samplers (sampling.py): an image is treated
alike in one process or in any of N, and a resumed epoch repeats the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from core.birads import Birads
from ml_backend.detector.frcnn import to_input
from ml_backend.detector.interface import Box

Target = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Sample:
    """One training image: PNG path (relative to LABELER_HOME) and its lesion boxes."""

    png_path: str
    boxes: tuple[Box, ...]
    categories: tuple[Birads, ...]


def map_category(category: Birads, space: Sequence[Birads]) -> Birads | None:
    """A category in a label space: itself, its coarse form (4A -> 4), or None if it has none."""
    if category in space:
        return category
    if category.coarse in space:
        return category.coarse
    return None


def augmentations(*, up_down: bool = False) -> v2.Transform:
    flips: list[v2.Transform] = [v2.RandomHorizontalFlip(0.5)]
    if up_down:
        flips.append(v2.RandomVerticalFlip(0.5))
    return v2.Compose(
        [
            *flips,
            v2.RandomApply([v2.RandomRotation(10)], p=0.5),
            v2.ColorJitter(brightness=0.25, contrast=0.15),
            v2.SanitizeBoundingBoxes(min_size=2),
        ]
    )


class DetectionDataset(Dataset[tuple[torch.Tensor, Target]]):
    def __init__(
        self,
        samples: Sequence[Sample],
        home: Path,
        *,
        size: int,
        box_categories: Sequence[Birads],
        augment: bool,
        up_down: bool = False,
    ) -> None:
        self.samples, self.home, self.size = list(samples), home, size
        self.classes = {c: i + 1 for i, c in enumerate(box_categories)}  # 0 is background
        self.transform = augmentations(up_down=up_down) if augment else None
        self.epoch_seed = 0  # set by the trainer before each epoch

    def sample_seed(self, index: int) -> int:
        return self.epoch_seed * 1_000_003 + index

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        sample = self.samples[index]
        with Image.open(self.home / sample.png_path) as img:
            pixels = np.asarray(img.convert("RGB"))
        height, width = pixels.shape[:2]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32) / self.size
        boxes = torch.tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4) / scale
        labels = torch.tensor([self.classes[c] for c in sample.categories], dtype=torch.int64)
        image = to_input(pixels, self.size)
        seed = torch.tensor(self.sample_seed(index))
        if self.transform is None:
            return image, {"boxes": boxes, "labels": labels, "seed": seed}
        bbox = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(self.size, self.size))
        with torch.random.fork_rng(devices=[]):  # v2 transforms draw from the global RNG
            torch.manual_seed(int(seed))
            out_image, out = self.transform(
                tv_tensors.Image(image), {"boxes": bbox, "labels": labels}
            )
        return out_image.as_subclass(torch.Tensor), {
            "boxes": out["boxes"].as_subclass(torch.Tensor),
            "labels": out["labels"],
            "seed": seed,
        }


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    return [b[0] for b in batch], [b[1] for b in batch]
