"""detectron2-style evaluator: reset(), process() batches, evaluate() -> one typed result.

It reports the paper's Table I (image-level BI-RADS confusion matrix and per-category
ACC/SEN/SPE) and Table II (benign/malignant screening), plus COCO mAP and lesion recall.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from core.birads import Birads, Pathology, Reading, reading
from core.results import (
    Birads4Split,
    BiradsTable,
    DetectionScores,
    EvaluationMetrics,
    OperatingPoint,
    Screening,
)
from ml_backend.detector.interface import GroundTruth, ImagePrediction
from ml_backend.evaluation.birads4 import SPLIT_LABELS, evaluate_4ab
from ml_backend.evaluation.coco import coco_map, lesion_map
from ml_backend.evaluation.detection import lesion_detection
from ml_backend.evaluation.metrics import (
    binary_metrics,
    confusion_matrix,
    matrix_of,
    one_vs_rest,
    per_class_table,
    roc_auc,
    roc_points,
    sensitivity_at_specificity,
)
from ml_backend.prelabel.calibration import Calibrator, rates_at
from ml_backend.prelabel.category import ShownBoxes, image_category
from ml_backend.prelabel.likelihood import acr_category

SCREENING_SPE = 0.80  # the fixed specificity of Screening.sen_at_spe80
SCREENING_LABELS = [Reading.BENIGN.value, Reading.MALIGNANT.value]


class DetectionEvaluator:
    """Accumulates (ground truth, prediction) pairs, then computes every metric at once."""

    def __init__(
        self,
        label_space: Sequence[Birads],
        *,
        score_threshold: float = 0.5,
        plain_4: Reading = Reading.MALIGNANT,
        shown: ShownBoxes | None = None,
        calibrator: Calibrator | None = None,
    ) -> None:
        """`score_threshold` counts boxes for lesion recall / FP; the image's category is the
        one pre-label rule over the `shown` boxes; `calibrator` adds the operating point."""
        self.labels: tuple[Birads, ...] = tuple(sorted({Birads.B1, *label_space}, key=_order))
        self.score_threshold = score_threshold
        self.plain_4 = plain_4
        self.shown = shown if shown is not None else ShownBoxes()
        self.calibrator = calibrator
        self._gts: list[GroundTruth] = []
        self._preds: list[ImagePrediction] = []
        self._expert: list[Birads] = []  # image categories before mapping into the label space

    def reset(self) -> None:
        self._gts, self._preds, self._expert = [], [], []

    def process(
        self, ground_truths: Sequence[GroundTruth], predictions: Sequence[ImagePrediction]
    ) -> None:
        """Add one batch; ground-truth categories are mapped into the label space here."""
        if len(ground_truths) != len(predictions):
            raise ValueError(
                f"{len(ground_truths)} ground truths but {len(predictions)} predictions"
            )
        gts = [self._gt_in_space(gt) for gt in ground_truths]
        preds = [self._prediction_in_space(p) for p in predictions]
        self._gts.extend(gts)
        self._preds.extend(preds)
        self._expert.extend(gt.image_category for gt in ground_truths)

    def evaluate(self) -> EvaluationMetrics:
        if not self._gts:
            raise ValueError("nothing to evaluate: call process() first")
        return EvaluationMetrics(
            n_images=len(self._gts),
            score_threshold=self.score_threshold,
            detection=self._detection_metrics(),
            birads=self._birads_table(),
            screening=self._screening_table(),
            acr_split=self._acr_split(),
        )

    def _acr_split(self) -> Birads4Split | None:
        """Table III by the ACR likelihood bins of the calibrated probability: expert 4A/4B
        against 4A (bins 3, 4A) or 4B (bins 4B, 4C, 5). None without a calibrator or without
        expert 4A/4B images."""
        if self.calibrator is None:
            return None
        pairs = [
            (expert, acr_category(self.calibrator(self._malignancy_score(p))))
            for expert, p in zip(self._expert, self._preds, strict=True)
            if expert in SPLIT_LABELS
        ]
        if not pairs:
            return None
        called = [Birads.B4A if c.order <= Birads.B4A.order else Birads.B4B for _, c in pairs]
        return evaluate_4ab([e for e, _ in pairs], called)

    def to_space(self, category: Birads) -> Birads:
        """A category of the label space; plain 4 vs 4A/4B/4C is never guessed.

        In a 5-way space (which has plain 4) 4A/4B/4C coarsen to 4. Anything else outside the
        space (plain 4 against 4A/4B/4C, or any 4 against a 1/2/3/5 space) raises.
        """
        if category in self.labels:
            return category
        if Birads.B4 in self.labels and category.coarse in self.labels:
            return category.coarse
        space = ", ".join(c.value for c in self.labels)
        raise ValueError(f"BI-RADS {category.value} is not in the label space ({space})")

    def _gt_in_space(self, gt: GroundTruth) -> GroundTruth:
        return dataclasses.replace(
            gt,
            categories=tuple(self.to_space(c) for c in gt.categories),
            image_category=self.to_space(gt.image_category),
        )

    def _prediction_in_space(self, prediction: ImagePrediction) -> ImagePrediction:
        detections = tuple(
            dataclasses.replace(d, category=self.to_space(d.category))
            for d in prediction.detections
        )
        return dataclasses.replace(prediction, detections=detections)

    def _detection_metrics(self) -> DetectionScores:
        boxed = [c for c in self.labels if c is not Birads.B1]
        aware = coco_map(self._gts, self._preds, boxed)
        agnostic = lesion_map(self._gts, self._preds)
        found = lesion_detection(self._gts, self._preds, score_threshold=self.score_threshold)
        return DetectionScores(
            map50=aware["map50"],
            map50_95=aware["map50_95"],
            lesion_map50=agnostic["map50"],
            lesion_map50_95=agnostic["map50_95"],
            lesion_recall50=found["lesion_recall"],
            fp_per_image=found["fp_per_image"],
        )

    def _birads_table(self) -> BiradsTable:
        """Table I: one image-level category per image, BI-RADS 1 when no box is kept."""
        labels = [c.value for c in self.labels]
        truth = [gt.image_category.value for gt in self._gts]
        predicted = [self._category(p).value for p in self._preds]
        return per_class_table(labels, confusion_matrix(truth, predicted, labels))

    def _screening_table(self) -> Screening:
        """Table II: benign vs malignant reading (4B/4C/5 malignant, plain 4 as configured)."""
        truth = [self._reading(gt.image_category) for gt in self._gts]
        predicted = [self._reading(self._category(p)) for p in self._preds]
        matrix = confusion_matrix(truth, predicted, SCREENING_LABELS)
        scores = [self._malignancy_score(p) for p in self._preds]
        malignant = [t == Reading.MALIGNANT.value for t in truth]
        known = [
            (gt.pathology is Pathology.MALIGNANT, s)
            for gt, s in zip(self._gts, scores, strict=True)
            if gt.pathology is not None
        ]
        positive = SCREENING_LABELS.index(Reading.MALIGNANT)
        return Screening(
            plain_4_counted_as=self.plain_4,
            matrix=matrix_of(SCREENING_LABELS, matrix),
            rates=binary_metrics(one_vs_rest(matrix, positive)),
            auc=roc_auc(malignant, scores),
            sen_at_spe80=sensitivity_at_specificity(malignant, scores, specificity=SCREENING_SPE),
            roc=roc_points(malignant, scores),
            pathology_auc=roc_auc([k for k, _ in known], [s for _, s in known]) if known else None,
            n_with_pathology=len(known) if known else None,
            operating_point=self._operating_point(),
        )

    def _category(self, prediction: ImagePrediction) -> Birads:
        return image_category(prediction.detections, self.shown, plain_4=self.plain_4).category

    def _operating_point(self) -> OperatingPoint | None:
        """SEN/SPE by pathology at the calibrator's validation-chosen threshold."""
        cal = self.calibrator
        known = [(gt, p) for gt, p in zip(self._gts, self._preds, strict=True) if gt.pathology]
        if cal is None or not known:
            return None
        malignant = [gt.pathology is Pathology.MALIGNANT for gt, _ in known]
        probs = [cal(self._malignancy_score(p)) for _, p in known]
        return OperatingPoint(
            target_sensitivity=cal.target_sensitivity,
            threshold=cal.threshold,
            rates=rates_at(malignant, probs, cal.threshold),
        )

    def _reading(self, category: Birads) -> str:
        return reading(category, plain_4=self.plain_4).value

    def _malignancy_score(self, prediction: ImagePrediction) -> float:
        """The grader's raw image score from the one pre-label rule (prelabel.category)."""
        return image_category(prediction.detections, self.shown, plain_4=self.plain_4).probability


def _order(category: Birads) -> int:
    return category.order
