"""Batches of P lesions x K views (Guo et al. use 8 x 8), for the lesion-recognition loss.

A batch lists dataset indices lesion by lesion: K indices of lesion 1, then K of lesion 2, ...
A lesion with n >= K views contributes K distinct views; one with n < K views repeats them in
turn (every view appears floor(K/n) or ceil(K/n) times) rather than at random, so no view of
a 2-view BUS-BRA lesion is left out. The dataset draws a fresh augmentation on every
__getitem__, so repeated indices become different crops: the positives of a repeated view are
its own augmentations plus the other views. Images without a lesion id are one-view lesions.
The last incomplete batch is dropped (the loss needs P lesions for negatives). Order depends
only on (seed, epoch), so a resumed run replays the same batches.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from core.errors import BadInputError


def group_by_lesion(lesion_ids: Sequence[Hashable | None]) -> list[list[int]]:
    """Dataset indices per lesion, in first-seen order; None is a lesion of its own."""
    groups: dict[Hashable, list[int]] = {}
    for index, lesion in enumerate(lesion_ids):
        key = ("image", index) if lesion is None else ("lesion", lesion)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


class LesionBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        lesion_ids: Sequence[Hashable | None],
        *,
        lesions_per_batch: int = 8,
        views_per_lesion: int = 8,
        seed: int = 0,
    ) -> None:
        self.groups = group_by_lesion(lesion_ids)
        if lesions_per_batch < 2 or views_per_lesion < 1:
            raise ValueError("a batch needs at least 2 lesions and 1 view per lesion")
        if len(self.groups) < lesions_per_batch:
            raise BadInputError(
                f"{len(self.groups)} lesions, fewer than one batch: lower --lesions-per-batch"
            )
        self.p, self.k, self.seed, self.epoch = lesions_per_batch, views_per_lesion, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.groups) // self.p

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.groups))
        for start in range(0, len(self) * self.p, self.p):
            batch: list[int] = []
            for g in order[start : start + self.p]:
                batch.extend(self._views(self.groups[g], rng))
            yield batch

    def _views(self, indices: list[int], rng: np.random.Generator) -> list[int]:
        shuffled = [int(i) for i in rng.permutation(indices)]
        return [shuffled[i % len(shuffled)] for i in range(self.k)]
