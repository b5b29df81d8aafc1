"""Stored evaluations (the paper's Tables I-III) and the inputs of a screening ROC curve."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.birads import Birads, Reading, reading
from core.results import BinaryRates, EvaluationMetrics, malignancy_score
from db.models import Evaluation, Image, ModelVersion, Prediction, ReferenceLabel
from db.queries import versions as version_queries
from db.reports.common import columnar, utc


@dataclass(frozen=True)
class EvaluationKey:
    id: int
    model_version_id: str
    kind: str
    dataset: str
    split: str
    created_at: datetime
    active: bool

    @property
    def title(self) -> str:
        marker = " (active)" if self.active else ""
        return f"{self.model_version_id}{marker} · {self.kind} · {self.dataset}/{self.split}"


def evaluation_keys(session: Session, *, evaluation_id: int | None = None) -> list[EvaluationKey]:
    """Every stored evaluation (or the one asked for), newest first, with the active marker."""
    active = set(version_queries.active_model_ids(session).values())
    stmt = (
        select(
            Evaluation.id,
            Evaluation.model_version_id,
            ModelVersion.kind,
            Evaluation.dataset,
            Evaluation.split,
            Evaluation.created_at,
        )
        .join(ModelVersion, ModelVersion.id == Evaluation.model_version_id)
        .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
    )
    if evaluation_id is not None:
        stmt = stmt.where(Evaluation.id == evaluation_id)
    return [
        EvaluationKey(int(i), v, kind, d, s, utc(at), v in active)
        for i, v, kind, d, s, at in session.execute(stmt)
    ]


@dataclass(frozen=True)
class RatesRow:
    """One row of a rates table: a class (a BI-RADS category, "malignant", "4B") against the
    rest, with the stored Wilson intervals."""

    label: str
    rates: BinaryRates


@dataclass(frozen=True)
class EvaluationReport:
    """A stored evaluation with the rows of its tables; the rest is read from `metrics`."""

    key: EvaluationKey
    metrics: EvaluationMetrics

    @property
    def per_category(self) -> tuple[RatesRow, ...]:
        """Table I's rows in the matrix's label order."""
        table = self.metrics.birads
        labels = table.matrix.labels or tuple(table.per_category)
        return tuple(
            RatesRow(label, table.per_category[label])
            for label in labels
            if label in table.per_category
        )

    @property
    def screening_rates(self) -> RatesRow:
        return RatesRow(Reading.MALIGNANT.value, self.metrics.screening.rates)

    @property
    def birads4_rates(self) -> RatesRow | None:
        split = self.metrics.birads4_split
        return None if split is None else RatesRow(split.positive, split.rates)


def evaluation_report(session: Session, *, evaluation_id: int) -> EvaluationReport | None:
    """One stored evaluation with its key (version, kind, active marker)."""
    keys = evaluation_keys(session, evaluation_id=evaluation_id)
    row = session.get(Evaluation, evaluation_id)
    if not keys or row is None:
        return None
    return EvaluationReport(keys[0], row.metrics)


@dataclass(frozen=True)
class ScreeningScores:
    """Per image: malignant by the reference label, and the model's malignancy score."""

    image_id: tuple[int, ...] = ()
    malignant: tuple[bool, ...] = ()
    score: tuple[float, ...] = ()


def screening_scores(session: Session, *, model_version_id: str, split: str) -> ScreeningScores:
    """Inputs of a ROC curve from a version's stored pre-labels on one split's reference-labeled
    images, for evaluations stored before the evaluator kept its curve.

    Reference categories are read in the version's label space: with plain 4 in it, 4A/4B/4C
    count as 4 (malignant); without 4, BI-RADS 4 images are left out, as the evaluator does.
    """
    version = session.get(ModelVersion, model_version_id)
    if version is None:
        return ScreeningScores()
    has_4 = Birads.B4.value in {str(c) for c in version.label_space}
    stmt = (
        select(Prediction.image_id, ReferenceLabel.birads, Prediction.boxes)
        .join(Image, Image.id == Prediction.image_id)
        .join(ReferenceLabel, ReferenceLabel.image_id == Image.id)
        .where(Prediction.model_version_id == model_version_id, Image.split == split)
        .order_by(Prediction.image_id, ReferenceLabel.id)
    )
    seen: set[int] = set()
    out: list[tuple[int, bool, float]] = []
    for image_id, birads, boxes in session.execute(stmt):
        if image_id in seen or (not has_4 and birads.coarse is Birads.B4):
            continue
        seen.add(image_id)
        score = malignancy_score((b.score or 0.0, b.probs) for b in boxes)
        truth = birads.coarse if has_4 else birads
        if score is not None:
            out.append((image_id, reading(truth) is Reading.MALIGNANT, score))
    return columnar(ScreeningScores, out)
