"""The grader: each detected box's P(malignant) and BI-RADS estimate, before calibration.

Two graders, one contract. The detector grades its own boxes when no lesion encoder is active:
a box's P(malignant) is the mass its class probabilities put on malignant readings
(core.results.malignancy_score) and its category is the detector's. The lesion encoder, when
active, grades every box from the crop it was trained on (Shi et al., seed 004): its
benign/malignant head gives P(malignant), and its BI-RADS regression head, trained on the middle
of each category's ACR likelihood range (encoder.targets.birads_score), is read ordinally: cut
points fitted on the validation lesions (calibration.BiradsCuts) pick the step 2/3/4/5, the
nearest target the subcategory, among the categories the detector's label space holds (so a
five-way detector's boxes stay five-way, and plain 4 still goes to the 4A/4B splitter). An
encoder without that head grades P(malignant) only; the box keeps the detector's category.

A box the encoder graded is a `Detection` whose `malignancy` is set; the image-category rule, the
calibrator, the evaluator and the stored row read it through category.box_malignancy, which
falls back to the detector's probabilities for a box no encoder graded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import torch

from core.birads import Birads
from ml_backend.detector.interface import ImagePrediction, RGBImage
from ml_backend.encoder.embed import lesion_crop
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.targets import MALIGNANT, birads_score
from ml_backend.prelabel.calibration import BiradsCuts

GraderName = Literal["detector", "encoder"]


class Grader(Protocol):
    @property
    def name(self) -> GraderName: ...

    @property
    def version(self) -> str | None: ...  # the encoder version; None: the detector grades

    def grade(self, image: RGBImage, prediction: ImagePrediction) -> ImagePrediction: ...


@dataclass(frozen=True)
class DetectorGrader:
    """The detector's class probabilities grade its own boxes (no encoder active): nothing to
    add, since box_malignancy reads an ungraded box's probabilities."""

    name: GraderName = "detector"
    version: str | None = None

    def grade(self, image: RGBImage, prediction: ImagePrediction) -> ImagePrediction:
        return prediction


def decode_birads(score: float, space: Sequence[Birads], cuts: BiradsCuts | None = None) -> Birads:
    """The lesion category of `space` for a regressed score (ordinal: targets rise with the
    likelihood of malignancy). With `cuts` (fitted on the validation lesions) they pick the
    coarse step 2/3/4/5 and the nearest target picks within it (4A/4B/4C where the space has
    them); without, the nearest target over the whole space. Never BI-RADS 1 (no lesion)."""
    lesions = [c for c in space if c is not Birads.B1]
    if not lesions:
        raise ValueError("the label space holds no lesion category")
    if cuts is not None:
        step = cuts.coarse(score)
        within = [c for c in lesions if c.coarse is step]
        lesions = within or lesions
    return min(lesions, key=lambda c: (abs(birads_score(c) - score), c.order))


@dataclass(frozen=True)
class EncoderGrader:
    """The active lesion encoder grades each box from its crop (see the module header).

    `flip_tta` averages the heads over the crop and its left-right mirror (test-time
    augmentation; ultrasound's near field stays at the top, so only left-right)."""

    version: str | None
    model: LesionEncoder
    space: tuple[Birads, ...]  # the detector's label space: the categories a box may carry
    cuts: BiradsCuts | None = None  # the encoder calibrator's (calibration.fit_birads_cuts)
    flip_tta: bool = False
    name: GraderName = "encoder"

    @torch.inference_mode()
    def grade(self, image: RGBImage, prediction: ImagePrediction) -> ImagePrediction:
        if not prediction.detections:
            return prediction
        crops = torch.stack([lesion_crop(self.model, image, d.xyxy) for d in prediction.detections])
        p, scores = self._heads(crops)
        graded = tuple(
            replace(
                d,
                malignancy=float(p[i]),
                category=decode_birads(float(scores[i]), self.space, self.cuts)
                if scores is not None
                else d.category,
            )
            for i, d in enumerate(prediction.detections)
        )
        return replace(prediction, detections=graded)

    def _heads(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """P(malignant) and the regressed BI-RADS score per crop (None without the head)."""
        n = len(crops)
        if self.flip_tta:
            crops = torch.cat([crops, crops.flip(-1)])
        device = next(self.model.parameters()).device
        out = self.model(crops.to(device))
        p = torch.softmax(out.logits.float(), dim=1)[:, MALIGNANT].cpu()
        scores = out.birads.float().cpu() if out.birads is not None else None
        if self.flip_tta:
            p = (p[:n] + p[n:]) / 2
            scores = (scores[:n] + scores[n:]) / 2 if scores is not None else None
        return p, scores
