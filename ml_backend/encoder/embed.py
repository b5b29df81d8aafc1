"""Lesion boxes -> embeddings with a trained encoder, cut as the encoder's config says.

Shared by the index build (labeler/jobs/similar.py) and the ML backend, so a query box is
cropped and embedded exactly as the indexed boxes were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from ml_backend.detector.interface import Box, RGBImage
from ml_backend.encoder.crops import crop_lesion
from ml_backend.encoder.index import Vector
from ml_backend.encoder.model import LesionEncoder


def lesion_crop(model: LesionEncoder, image: RGBImage, box: Box) -> torch.Tensor:
    """The crop the encoder was trained on: box + its margin, square, resized."""
    config = model.config
    return crop_lesion(image, box, margin=config.crop_margin, size=config.crop_size)


@torch.inference_mode()
def embed_crops(model: LesionEncoder, crops: Sequence[torch.Tensor]) -> Vector:
    """Unit embeddings (N x D float32) of crops already cut by `lesion_crop`."""
    if not crops:
        return np.zeros((0, 0), dtype=np.float32)
    device = next(model.parameters()).device
    batch = torch.stack(list(crops)).to(device)
    out: Vector = model(batch).embedding.float().cpu().numpy()
    return out


def embed_boxes(
    model: LesionEncoder,
    items: Iterable[tuple[RGBImage, Box]],
    *,
    batch_size: int = 32,
    advance: Callable[[int], None] | None = None,
) -> Vector:
    """Embeddings of (image, box) pairs, computed batch by batch to bound memory."""
    parts: list[Vector] = []
    crops: list[torch.Tensor] = []
    for image, box in items:
        crops.append(lesion_crop(model, image, box))
        if len(crops) == batch_size:
            parts.append(embed_crops(model, crops))
            if advance is not None:
                advance(len(crops))
            crops = []
    if crops:
        parts.append(embed_crops(model, crops))
        if advance is not None:
            advance(len(crops))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
