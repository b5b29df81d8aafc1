"""The detector contract: what every engine predicts, and what evaluation compares it with.

Boxes are pixel xyxy of the image as stored (the de-identified PNG). Categories are BI-RADS from
the model's label space; the image's category comes from ml_backend.prelabel.category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

from core.birads import Birads, Pathology
from core.settings import Precision

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    xyxy: Box
    category: Birads
    score: float  # the detector's probability of its own class: ranks the boxes shown
    probs: dict[Birads, float]  # over the label space's categories (background left out)
    malignancy: float | None = None  # the grader's raw P(malignant); None: not graded yet


@dataclass(frozen=True)
class ImagePrediction:
    detections: tuple[Detection, ...]  # highest score first
    uncertainty: float  # 0 (sure) .. 1 (unsure); drives active-learning order
    # The image's category is ml_backend.prelabel.category.image_category (one rule everywhere).


@dataclass(frozen=True)
class GroundTruth:
    """The reference for one image: lesion boxes with categories, and image-level labels."""

    boxes: tuple[Box, ...]
    categories: tuple[Birads, ...]  # one per box
    image_category: Birads  # BI-RADS of the image (1 when there is no lesion)
    pathology: Pathology | None = None


RGBImage = npt.NDArray[np.uint8]  # HxWx3 or HxW, 8-bit


class Detector(Protocol):
    """Any engine that pre-labels images; torchvision's Faster R-CNN is the first."""

    @property
    def label_space(self) -> tuple[Birads, ...]: ...

    @property
    def precision(self) -> Precision: ...  # the arithmetic it predicts in

    def predict(self, images: Sequence[RGBImage]) -> list[ImagePrediction]: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> Self: ...
