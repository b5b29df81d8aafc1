"""Lesion crops: margin, square window, clipping and zero padding at the image borders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ml_backend.encoder.crops import CropWindow, crop_lesion, crop_window


def test_window_inside_the_image_is_the_box_plus_margin() -> None:
    # 20 x 20 box, margin 0.1 -> 2 px each side: 24 x 24 around the centre (50, 60).
    assert crop_window((40, 50, 60, 70), 200, 200, margin=0.1) == CropWindow(38, 48, 62, 72)


def test_window_is_square_around_a_wide_box() -> None:
    # 40 x 10 box, margin 0: the square side is the longer side, 40, centred on y = 25.
    assert crop_window((10, 20, 50, 30), 200, 200, margin=0.0) == CropWindow(10, 5, 50, 45)
    # square=False keeps the box's own shape (margin from the longer side: 4 px).
    loose = crop_window((10, 20, 50, 30), 200, 200, margin=0.1, square=False)
    assert loose == CropWindow(6, 16, 54, 34)


def test_window_is_clipped_and_padded_at_the_top_left() -> None:
    # 20 x 10 box at the corner, margin 0.25 -> 5 px; square half-side 15 around (10, 5):
    # wanted x -5..25, y -10..20; inside the image x 0..25, y 0..20; pad left 5, top 10.
    win = crop_window((0, 0, 20, 10), 100, 80, margin=0.25)
    assert win == CropWindow(0, 0, 25, 20, pad=(5, 0, 10, 0))


def test_window_is_clipped_and_padded_at_the_bottom_right() -> None:
    # 10 x 10 box touching the corner of a 100 x 80 image, margin 0.5: wanted 85..105, 65..85.
    win = crop_window((90, 70, 100, 80), 100, 80, margin=0.5)
    assert win == CropWindow(85, 65, 100, 80, pad=(0, 5, 0, 5))
    unpadded = crop_window((90, 70, 100, 80), 100, 80, margin=0.5, square=False)
    assert unpadded == CropWindow(85, 65, 100, 80)


def test_box_outside_the_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside the image"):
        crop_window((120, 10, 130, 20), 100, 80)
    with pytest.raises(ValueError, match="xyxy"):
        crop_window((30, 10, 20, 20), 100, 80)


def test_crop_pads_with_zeros_at_the_border() -> None:
    # Image all 255; box (0, 0, 10, 10), margin 0.5 -> window -5..15: 5 px of zero padding on
    # the left and top of a 20 x 20 crop; size 20 means no resampling.
    image = torch.full((1, 40, 40), 255, dtype=torch.uint8)
    crop = crop_lesion(image, (0, 0, 10, 10), margin=0.5, size=20)
    assert crop.shape == (3, 20, 20)
    assert torch.all(crop[:, :5, :] == 0) and torch.all(crop[:, :, :5] == 0)
    torch.testing.assert_close(crop[:, 5:, 5:], torch.ones(3, 15, 15))


def test_crop_takes_the_right_pixels() -> None:
    # A horizontal ramp: the crop of columns 38..62 (size 24, no resampling) holds 38..61.
    ramp = np.tile(np.arange(200, dtype=np.uint8), (200, 1))
    crop = crop_lesion(ramp, (40, 50, 60, 70), margin=0.1, size=24)
    torch.testing.assert_close(crop[0, 0] * 255, torch.arange(38, 62, dtype=torch.float32))


def test_pil_numpy_and_tensor_inputs_agree_and_are_resized() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (120, 90), dtype=np.uint8)
    box = (10.5, 20.0, 60.0, 100.0)
    from_pil = crop_lesion(Image.fromarray(grey), box, size=64)
    from_numpy = crop_lesion(grey, box, size=64)
    from_tensor = crop_lesion(torch.from_numpy(grey), box, size=64)
    assert from_pil.shape == (3, 64, 64) and from_pil.dtype == torch.float32
    torch.testing.assert_close(from_pil, from_numpy)
    torch.testing.assert_close(from_pil, from_tensor)
    torch.testing.assert_close(from_pil[0], from_pil[2])  # grey is repeated into 3 channels
    assert float(from_pil.min()) >= 0.0 and float(from_pil.max()) <= 1.0
