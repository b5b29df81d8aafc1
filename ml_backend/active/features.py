"""What two strategies need from the detector: pooled backbone features and flip-TTA predictions.

Both reuse the detector's own preprocessing (resize to image_size, the model's normalization), so
features and flipped predictions describe the image the way the detector sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import torch

from ml_backend.detector.frcnn import FasterRCNNDetector, to_input
from ml_backend.detector.interface import Box, ImagePrediction, RGBImage


@torch.inference_mode()
def pooled_features(
    detector: FasterRCNNDetector, images: Sequence[RGBImage], batch_size: int = 8
) -> npt.NDArray[np.float32]:
    """(n, channels): global average of the top FPN level (the extra max-pool level left out)."""
    model = detector.model.eval()
    rows = [np.zeros((0, model.backbone.out_channels), dtype=np.float32)]
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = [to_input(img, detector.config.image_size).to(detector.device) for img in chunk]
        with torch.autocast(detector.device.type, dtype=torch.bfloat16, enabled=detector.bf16):
            tensors, _ = model.transform(batch)
            levels = model.backbone(tensors.tensors)
        top = [v for k, v in levels.items() if k != "pool"][-1]
        rows.append(top.float().mean(dim=(2, 3)).cpu().numpy())
    return np.concatenate(rows).astype(np.float32)


def mirror_box(box: Box, width: int) -> Box:
    """A box under a horizontal flip of an image `width` pixels wide: x -> width - x."""
    x0, y0, x1, y1 = box
    return (width - x1, y0, width - x0, y1)


def mirror(prediction: ImagePrediction, width: int) -> ImagePrediction:
    """The prediction with every box mirrored (flipping twice gives the original back)."""
    detections = tuple(replace(d, xyxy=mirror_box(d.xyxy, width)) for d in prediction.detections)
    return replace(prediction, detections=detections)


def flip_predictions(
    detector: FasterRCNNDetector, images: Sequence[RGBImage]
) -> list[ImagePrediction]:
    """Predictions on horizontally flipped copies, boxes mapped back to the original frame."""
    flipped = [np.ascontiguousarray(img[:, ::-1]) for img in images]
    predictions = detector.predict(flipped)
    return [mirror(p, img.shape[1]) for p, img in zip(predictions, images, strict=True)]
