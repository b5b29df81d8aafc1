"""Batches for self-supervised pre-training on a FrameSet (frames.py).

NT-Xent (SimCLR): one item per clip, two augmented crops of it: two different frames of the
clip (`pair="frames"`, the video positive), or one frame twice (`pair="views"`, plain SimCLR);
a one-frame clip always gives two views of its frame. A batch holds distinct clips, so no
negative is another frame of the anchor's own clip.

Hard triplet: P clips x K frames per batch (the lesion sampler, with clips as groups); each item
is one augmented frame and its clip index. A clip with fewer than K frames repeats them, and
every repeat is a different augmentation.

Augmentations are SimCLR's, adapted to grey ultrasound: random resized crop (scale >= 0.2, as
smaller crops are mostly speckle or black surroundings), horizontal flip only (depth runs top
to bottom), brightness/contrast jitter without hue or saturation, Gaussian blur. Randomness
comes from torch's global generator, which the loop seeds per epoch, so a resumed run replays
the same crops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ml_backend.encoder.frames import FrameSet
from ml_backend.encoder.sampler import LesionBatchSampler

Augment = Callable[[torch.Tensor], torch.Tensor]
PairMode = Literal["frames", "views"]


def simclr_augment(size: int) -> Augment:
    """Float 3 x S x S in [0, 1] -> a random view, 3 x size x size."""
    blur = max(3, (size // 10) | 1)  # odd kernel about a tenth of the crop, as in SimCLR
    transform = v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
            v2.RandomApply([v2.GaussianBlur(blur, sigma=(0.1, 2.0))], p=0.5),
        ]
    )

    def augment(image: torch.Tensor) -> torch.Tensor:
        view: torch.Tensor = transform(image)
        return view.clamp(0.0, 1.0)

    return augment


class ClipPairs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item c: two augmented crops of clip c (NT-Xent's positive pair)."""

    def __init__(self, frames: FrameSet, augment: Augment, pair: PairMode) -> None:
        self.frames, self.augment, self.pair = frames, augment, pair

    def __len__(self) -> int:
        return len(self.frames.clips)

    def __getitem__(self, clip: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.frames.clips[clip].frames)
        if self.pair == "frames" and n > 1:
            first, second = (int(i) for i in torch.randperm(n)[:2])
        else:
            first = second = int(torch.randint(n, ()))
        frame = self.frames.frame
        return self.augment(frame(clip, first)), self.augment(frame(clip, second))


class ClipFrames(Dataset[tuple[torch.Tensor, int]]):
    """Item k: the k-th frame (FrameSet.frame_refs order), augmented, and its clip index."""

    def __init__(self, frames: FrameSet, augment: Augment) -> None:
        self.frames, self.augment = frames, augment
        self.refs = frames.frame_refs()

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip, frame = self.refs[index]
        return self.augment(self.frames.frame(clip, frame)), clip


def pair_loader(
    frames: FrameSet, augment: Augment, *, pair: PairMode, batch_size: int, seed: int, workers: int
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of distinct clips; the last short batch is dropped (too few negatives)."""
    return DataLoader(
        ClipPairs(frames, augment, pair),
        batch_size=min(batch_size, len(frames.clips)),
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=workers,
    )


def group_loader(
    frames: FrameSet,
    augment: Augment,
    *,
    clips_per_batch: int,
    frames_per_clip: int,
    seed: int,
    epoch: int,
    workers: int,
) -> DataLoader[tuple[torch.Tensor, int]]:
    """P clips x K frames per batch; P is capped at the number of clips."""
    sampler = LesionBatchSampler(
        frames.group_ids(),
        lesions_per_batch=min(clips_per_batch, len(frames.clips)),
        views_per_lesion=frames_per_clip,
        seed=seed,
    )
    sampler.set_epoch(epoch)
    return DataLoader(ClipFrames(frames, augment), batch_sampler=sampler, num_workers=workers)
