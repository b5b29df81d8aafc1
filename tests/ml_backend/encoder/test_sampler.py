"""P lesions x K views per batch."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from core.errors import BadInputError
from ml_backend.encoder.sampler import LesionBatchSampler

# a: 3 views, b: 2, c: 1, d: 9, and two images without a lesion id (one-view lesions).
IDS = ["a", "b", "a", "c", "d", None, "b", "a", None, *["d"] * 8]
P, K = 3, 4


def _lesion_of(index: int) -> object:
    lesion = IDS[index]
    return ("image", index) if lesion is None else lesion


def test_batches_are_p_lesions_of_k_views() -> None:
    sampler = LesionBatchSampler(IDS, lesions_per_batch=P, views_per_lesion=K)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6 // P
    seen = []
    for batch in batches:
        assert len(batch) == P * K
        chunks = [batch[i : i + K] for i in range(0, P * K, K)]
        lesions = [{_lesion_of(i) for i in chunk} for chunk in chunks]
        assert all(len(s) == 1 for s in lesions)  # each chunk of K is one lesion
        seen += [next(iter(s)) for s in lesions]
    assert sorted(map(str, seen)) == sorted(map(str, {_lesion_of(i) for i in range(len(IDS))}))


def test_short_lesions_repeat_views_evenly_and_long_ones_do_not_repeat() -> None:
    sampler = LesionBatchSampler(IDS, lesions_per_batch=P, views_per_lesion=K)
    for batch in sampler:
        for start in range(0, P * K, K):
            chunk = batch[start : start + K]
            n_views = sum(_lesion_of(i) == _lesion_of(chunk[0]) for i in range(len(IDS)))
            counts = Counter(chunk)
            assert len(counts) == min(n_views, K)  # every view used when there are < K
            assert max(counts.values()) - min(counts.values()) <= 1


def test_order_depends_on_seed_and_epoch_only() -> None:
    first = LesionBatchSampler(IDS, lesions_per_batch=P, views_per_lesion=K, seed=3)
    again = LesionBatchSampler(IDS, lesions_per_batch=P, views_per_lesion=K, seed=3)
    assert list(first) == list(again)
    epochs = []
    for epoch in range(4):
        first.set_epoch(epoch)
        epochs.append(list(first))
    assert any(e != epochs[0] for e in epochs[1:])


def test_works_as_a_dataloader_batch_sampler() -> None:
    sampler = LesionBatchSampler(IDS, lesions_per_batch=2, views_per_lesion=2)
    loader = DataLoader(TensorDataset(torch.arange(len(IDS))), batch_sampler=sampler)
    batches = [indices for (indices,) in loader]
    assert len(batches) == 3 and all(b.shape == (4,) for b in batches)
    assert batches[0].tolist() == next(iter(sampler))


def test_too_few_lesions_is_an_error() -> None:
    with pytest.raises(BadInputError, match="fewer than one batch"):
        LesionBatchSampler(["a", "a", "b"], lesions_per_batch=3)
