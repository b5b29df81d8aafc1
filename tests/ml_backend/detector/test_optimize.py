"""BatchNorm folding and channels_last must not change what the detector finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ml_backend.detector.config import load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.optimize import optimize_for_inference
from ml_backend.detector.precision import apply_precision


def test_folded_detector_predicts_the_same_boxes() -> None:
    torch.manual_seed(0)
    config = load_config("small").model_copy(update={"box_score_thresh": 0.0, "image_size": 256})
    detector = FasterRCNNDetector(config)
    for m in detector.model.modules():  # trained-looking statistics, so folding is not a no-op
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (200, 260), dtype=np.uint8) for _ in range(2)]
    before = detector.predict(images)

    folded = optimize_for_inference(detector)

    assert folded == 1 + 8 * 2 + 3  # stem + two convs in each of 8 basic blocks + 3 downsamples
    assert not any(isinstance(m, nn.BatchNorm2d) for m in detector.model.backbone.body.modules())
    after = detector.predict(images)
    for a, b in zip(after, before, strict=True):
        assert len(a.detections) == len(b.detections)
        for da, db in zip(a.detections, b.detections, strict=True):
            assert da.category == db.category
            assert da.score == pytest.approx(db.score, abs=1e-3)
            assert np.allclose(da.xyxy, db.xyxy, atol=0.5)


def test_bf16_predicts_in_fp32_terms(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = load_config("small").model_copy(update={"box_score_thresh": 0.0, "image_size": 128})
    detector = FasterRCNNDetector(config)
    assert apply_precision(detector, tmp_path, "bf16") == "bf16" and detector.bf16
    (pred,) = detector.predict([np.zeros((100, 120), dtype=np.uint8)])
    assert all(isinstance(d.score, float) and 0 <= d.score <= 1 for d in pred.detections)
    assert apply_precision(detector, tmp_path, "fp32") == "fp32" and not detector.bf16
