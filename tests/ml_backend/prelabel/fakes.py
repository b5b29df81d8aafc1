"""Stand-in detectors for the pre-label pipeline's tests (unit and Label Studio)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.birads import FIVE_WAY_SPACE, Birads
from core.settings import Precision
from ml_backend.detector.interface import ImagePrediction, RGBImage
from ml_backend.prelabel.category import ShownBoxes
from ml_backend.prelabel.pipeline import PrelabelPipeline, Splitter
from tests.ml_backend.evaluation.helpers import det, pred

BOX = (10.0, 10.0, 50.0, 50.0)


@dataclass
class Fixed:
    """A detector that answers the same prediction for every image."""

    answer: ImagePrediction
    label_space: tuple[Birads, ...] = FIVE_WAY_SPACE
    calls: int = 0
    precision: Precision = "fp32"

    def predict(self, images: Sequence[RGBImage]) -> list[ImagePrediction]:
        self.calls += len(images)
        return [self.answer for _ in images]


def plain_4(box: tuple[float, float, float, float] = BOX) -> ImagePrediction:
    """A five-way detector's plain-4 call."""
    return pred(det(box, Birads.B4, 0.7, {Birads.B4: 0.6, Birads.B3: 0.3, Birads.B5: 0.1}))


def splitting_pipeline(
    version: str, p5: float, box: tuple[float, float, float, float] = BOX
) -> PrelabelPipeline:
    """A plain-4 detector with a BI-RADS-4-excluded splitter whose P(BI-RADS 5) is `p5`
    (threshold 0.5: 4B at or above, 4A below)."""
    no4 = Fixed(pred(det(box, Birads.B5, 0.8, {Birads.B5: p5, Birads.B3: 1 - p5})))
    return PrelabelPipeline(
        version, Fixed(plain_4(box)), ShownBoxes(), splitter=Splitter("no4-test", no4, 0.5)
    )
