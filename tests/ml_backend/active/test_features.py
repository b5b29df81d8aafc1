"""Pooled features and flip-TTA predictions on a random-init small detector at 64x64."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch

from core.birads import Birads
from ml_backend.active.features import (
    flip_predictions,
    mirror,
    mirror_box,
    pooled_features,
)
from ml_backend.detector.config import load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.interface import Detection, ImagePrediction

H, W = 48, 80  # not square, so width and height cannot be confused


@pytest.fixture(scope="module")
def detector() -> FasterRCNNDetector:
    torch.manual_seed(0)
    config = load_config("small").model_copy(update={"image_size": 64, "box_score_thresh": 0.0})
    return FasterRCNNDetector(config)


def _image(seed: int) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    img[10:30, 5:25] = 200  # an off-centre bright "lesion": the flip changes the image
    return img


def test_mirror_box_maps_x_to_width_minus_x() -> None:
    assert mirror_box((10.0, 5.0, 30.0, 25.0), 100) == (70.0, 5.0, 90.0, 25.0)
    assert mirror_box((0.0, 0.0, 100.0, 7.0), 100) == (0.0, 0.0, 100.0, 7.0)


def test_mirror_keeps_everything_but_the_boxes() -> None:
    probs = {Birads.B3: 0.7, Birads.B5: 0.2}
    a = Detection((1.0, 2.0, 11.0, 12.0), Birads.B3, 0.7, probs)
    b = Detection((50.0, 0.0, 60.0, 9.0), Birads.B5, 0.2, probs)
    out = mirror(ImagePrediction((a, b), uncertainty=0.3), 64)
    assert [d.xyxy for d in out.detections] == [(53.0, 2.0, 63.0, 12.0), (4.0, 0.0, 14.0, 9.0)]
    assert [(d.category, d.score, d.probs) for d in out.detections] == [
        (Birads.B3, 0.7, probs),
        (Birads.B5, 0.2, probs),
    ]
    assert out.uncertainty == 0.3


def test_pooled_features_shape_determinism_and_batch_independence(
    detector: FasterRCNNDetector,
) -> None:
    images = [_image(0), _image(1), _image(2)]
    feats = pooled_features(detector, images, batch_size=2)
    assert feats.shape == (3, 256) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    alone = pooled_features(detector, [images[2]])
    np.testing.assert_allclose(alone[0], feats[2], rtol=1e-4, atol=1e-5)  # eval-mode BN
    assert not np.allclose(feats[0], feats[1])  # different images, different features
    assert pooled_features(detector, []).shape == (0, 256)
    assert not detector.model.training


def test_flip_predictions_are_the_flipped_image_predictions_mapped_back(
    detector: FasterRCNNDetector,
) -> None:
    img = _image(4)
    (back,) = flip_predictions(detector, [img])
    (raw,) = detector.predict([img[:, ::-1].copy()])
    assert len(back.detections) == len(raw.detections) > 0
    for got, flipped in zip(back.detections, raw.detections, strict=True):
        x0, y0, x1, y1 = flipped.xyxy
        assert got.xyxy == pytest.approx((W - x1, y0, W - x0, y1))
        assert 0 <= got.xyxy[0] <= got.xyxy[2] <= W and 0 <= got.xyxy[1] <= got.xyxy[3] <= H
        assert (got.category, got.score) == (flipped.category, flipped.score)
