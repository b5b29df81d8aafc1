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
    """The box centre of 40 augmented draws (rotations move it a little, flips a lot)."""
    data = DetectionDataset([sample], home, size=SIZE, box_categories=[Birads.B3], **kwargs)
    torch.manual_seed(0)
    centres = []
    for _ in range(40):
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


def test_no_augmentation_keeps_the_box(sample: Sample, tmp_path: Path) -> None:
    assert set(_draws(sample, tmp_path, augment=False)) == {(14.0, 12.0)}
