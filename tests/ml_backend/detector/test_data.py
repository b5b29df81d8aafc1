"""The detector's training augmentations: which flips each setting draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.birads import Birads
from ml_backend.detector.data import DetectionDataset, Sample

SIZE = 64


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    """A bright lesion in the top-left quarter of a dark image, boxed exactly."""
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    pixels[4:20, 6:22] = 255
    Image.fromarray(pixels).save(tmp_path / "a.png")
    return Sample("a.png", ((6.0, 4.0, 22.0, 20.0),), (Birads.B3,))


def _draws(sample: Sample, home: Path, **kwargs: bool) -> list[tuple[float, float]]:
    """The box centre in 40 epochs (rotations move it a little, flips a lot)."""
    data = DetectionDataset([sample], home, size=SIZE, box_categories=[Birads.B3], **kwargs)
    centres = []
    for epoch in range(40):
        data.epoch_seed = epoch
        _, target = data[0]
        x0, y0, x1, y1 = target["boxes"][0].tolist()
        centres.append(((x0 + x1) / 2, (y0 + y1) / 2))
    return centres


def test_standard_augmentation_flips_left_right_only(sample: Sample, tmp_path: Path) -> None:
    centres = _draws(sample, tmp_path, augment=True)
    assert any(x > SIZE / 2 for x, _ in centres) and any(x < SIZE / 2 for x, _ in centres)
    assert all(y < SIZE / 2 for _, y in centres)  # the near field stays at the top


def test_the_papers_setting_adds_up_down_flips(sample: Sample, tmp_path: Path) -> None:
    centres = _draws(sample, tmp_path, augment=True, up_down=True)
    assert any(y > SIZE / 2 for _, y in centres) and any(y < SIZE / 2 for _, y in centres)


def test_an_image_draws_the_same_augmentation_wherever_it_is_loaded(
    sample: Sample, tmp_path: Path
) -> None:
    """Its seed is the epoch's and its index's, not the global RNG's: one process or any of N,
    first or last in its batch, a resumed epoch or not, the same pixels and box."""
    data = DetectionDataset(
        [sample] * 3, tmp_path, size=SIZE, box_categories=[Birads.B3], augment=True
    )
    data.epoch_seed = 5
    image, target = data[2]
    torch.manual_seed(123)
    torch.rand(7)  # the global RNG moved on: no effect
    again, target_again = data[2]
    assert torch.equal(image, again) and torch.equal(target["boxes"], target_again["boxes"])
    assert int(target["seed"]) == data.sample_seed(2) != data.sample_seed(1)


def test_no_augmentation_keeps_the_box(sample: Sample, tmp_path: Path) -> None:
    assert set(_draws(sample, tmp_path, augment=False)) == {(14.0, 12.0)}
