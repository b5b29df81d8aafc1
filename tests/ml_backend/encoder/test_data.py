"""Lesion crops from the bundled BUS-BRA sample: preloading, targets, ultrasound-safe jitter."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from core.birads import Birads
from ml_backend.encoder.crops import crop_lesion
from ml_backend.encoder.data import (
    NO_CLASS,
    LesionCropDataset,
    augment,
    context_size,
    lesion_groups,
    lesion_indices,
    read_rgb,
)
from ml_backend.encoder.targets import birads_score
from tests.ml_backend.encoder.busbra_mini import HOME, mini_samples

SIZE = 64


@pytest.fixture(scope="module")
def dataset() -> LesionCropDataset:
    return LesionCropDataset.load(mini_samples(), HOME, size=SIZE, margin=0.1, augment=False)


def test_context_leaves_an_even_border_of_about_an_eighth() -> None:
    assert context_size(224) == 280 and context_size(64) == 80
    assert all((context_size(s) - s) % 2 == 0 for s in range(32, 300))


def test_crops_are_preloaded_once_as_grey_uint8(dataset: LesionCropDataset) -> None:
    assert len(dataset) == 62
    assert all(c.dtype == torch.uint8 for c in dataset.contexts)
    assert {tuple(c.shape) for c in dataset.contexts} == {(1, 80, 80)}  # BUS-BRA is grey
    stacked = dataset.stacked()
    assert stacked.shape == (62, 1, 80, 80) and torch.equal(stacked[7], dataset.contexts[7])


def test_eval_crop_is_the_lesion_crop_up_to_resampling(dataset: LesionCropDataset) -> None:
    for index in (0, 17, 40):
        sample = dataset.samples[index]
        pixels = read_rgb(HOME / sample.png_path)
        expected = crop_lesion(pixels, sample.box, margin=0.1, size=SIZE)
        got = dataset.crop(index)
        assert got.shape == (3, SIZE, SIZE)
        assert float((got - expected).abs().mean()) < 0.03
        other = crop_lesion(pixels, sample.box, margin=0.6, size=SIZE)  # a different window
        assert float((got - other).abs().mean()) > 2 * float((got - expected).abs().mean())


def test_targets_follow_lesion_pathology_and_birads(dataset: LesionCropDataset) -> None:
    samples = dataset.samples
    first, second = samples[0], samples[1]
    assert first.lesion_key == second.lesion_key  # bus_0001-l / -r
    crop, lesion, instance, cls, score = dataset[0]
    assert crop.shape == (3, SIZE, SIZE) and 0.0 <= float(crop.min()) <= float(crop.max()) <= 1.0
    assert lesion == dataset[1][1] and lesion != dataset[2][1]
    assert instance == 0 and dataset[1][2] == 1  # one instance per sample, not per lesion
    assert cls == first.pathology == 1 and score == birads_score(Birads.B4)
    bare = replace(first, pathology=None, birads=None)
    unlabeled = LesionCropDataset([bare], dataset.contexts[:1], size=SIZE, augment=False)
    _, _, _, cls, score = unlabeled[0]
    assert cls == NO_CLASS and math.isnan(score)


def test_groups_pair_the_two_views_of_each_lesion() -> None:
    samples = mini_samples()
    groups = lesion_groups(samples)
    assert len(groups) == len({s.lesion_key for s in samples})
    assert sorted(len(g) for g in groups).count(2) == 62 - len(groups)  # 1 or 2 views each
    assert all(len({samples[i].lesion_key for i in g}) == 1 for g in groups)
    ids = lesion_indices(samples)
    assert ids[0] == ids[1] == 0 and max(ids) == len(groups) - 1


def test_subset_shares_the_preloaded_crops(dataset: LesionCropDataset) -> None:
    part = dataset.subset([5, 9], augment=True)
    assert part.contexts[0] is dataset.contexts[5] and part.samples[1] == dataset.samples[9]
    assert part.augment and not dataset.augment


def test_augmentation_varies_but_is_reproducible_from_the_seed(
    dataset: LesionCropDataset,
) -> None:
    train = dataset.subset(range(len(dataset)), augment=True)
    torch.manual_seed(0)
    a, b = train.crop(3), train.crop(3)
    torch.manual_seed(0)
    assert torch.equal(train.crop(3), a)
    assert a.shape == (3, SIZE, SIZE) and not torch.equal(a, b)


def test_augmentation_keeps_the_near_field_on_top_and_the_lesion_central() -> None:
    """No vertical flip, small rotation and shift: a bright top band stays on top and the
    lesion at the centre still covers the crop's centre in every draw."""
    context = torch.zeros(1, 80, 80, dtype=torch.uint8)
    context[:, :24] = 200  # near field
    context[:, 34:46, 34:46] = 255  # the "lesion" at the centre
    torch.manual_seed(1)
    for _ in range(50):
        out = augment(context, SIZE)[0]
        assert out[:4].mean() > out[-4:].mean() + 0.3
        assert out[30:34, 30:34].min() > 0.5
