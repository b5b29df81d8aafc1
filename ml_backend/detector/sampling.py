"""Anchor and RoI sampling that depends on the image, not on the process or the batch it is in.

torchvision's BalancedPositiveNegativeSampler draws each image's positives and negatives from the
global RNG, one image after another, so the same image gets other samples in a batch of two than
in a process of its own. Here each image draws from a generator seeded with its own seed (set by
the training task before each step, from the run's seed, the epoch and the image's index), so one
process and N processes under torchrun take the same samples, and the same first loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler


class PerImageSampler(BalancedPositiveNegativeSampler):  # type: ignore[misc]
    """torchvision's sampler (same counts: `positive_fraction` of `batch_size_per_image`
    positives at most, negatives for the rest) with one generator per image."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        super().__init__(batch_size_per_image, positive_fraction)
        self.seeds: Sequence[int] | None = None  # one per image of the next batch

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if self.seeds is None:
            result: tuple[list[Tensor], list[Tensor]] = super().__call__(matched_idxs)
            return result
        pos_idx, neg_idx = [], []
        for seed, matched in zip(self.seeds, matched_idxs, strict=True):
            generator = torch.Generator(device=matched.device).manual_seed(seed)
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos_pick = _draw(positive, num_pos, generator)
            neg_pick = _draw(negative, num_neg, generator)
            pos_idx.append(_mask(matched, pos_pick))
            neg_idx.append(_mask(matched, neg_pick))
        return pos_idx, neg_idx


def _draw(candidates: Tensor, count: int, generator: torch.Generator) -> Tensor:
    order = torch.randperm(candidates.numel(), device=candidates.device, generator=generator)
    return candidates[order[:count]]


def _mask(matched: Tensor, picked: Tensor) -> Tensor:
    mask = torch.zeros_like(matched, dtype=torch.uint8)
    mask[picked] = 1
    return mask


def _heads(model: FasterRCNN) -> tuple[Any, Any]:
    return model.rpn, model.roi_heads


def install(model: FasterRCNN) -> None:
    """Replace the RPN's and the RoI heads' samplers of a torchvision Faster R-CNN (same
    settings)."""
    for head in _heads(model):
        old = head.fg_bg_sampler
        head.fg_bg_sampler = PerImageSampler(old.batch_size_per_image, old.positive_fraction)


def seed_samplers(model: FasterRCNN, seeds: Sequence[int] | None) -> None:
    """Each image's seed for the next forward pass (None: torchvision's global-RNG draws)."""
    for head in _heads(model):
        sampler = head.fg_bg_sampler
        if isinstance(sampler, PerImageSampler):
            sampler.seeds = seeds
