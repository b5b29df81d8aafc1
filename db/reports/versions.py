"""Model versions: lineage, promotions, the learning curve and the simulated curves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.results import (
    DetectorVersionMetrics,
    Estimate,
    EvaluationMetrics,
    ValidationSummary,
    VersionMetrics,
)
from db.models import Evaluation, ModelPromotion, ModelVersion, TrainingRun
from db.queries import simulations as simulation_queries
from db.queries import versions as version_queries
from db.reports.common import utc


@dataclass(frozen=True)
class VersionRow:
    id: str
    kind: str
    parent_id: str | None
    created_at: datetime
    status: str
    active: bool
    n_train_images: int | None
    label_space: tuple[str, ...]
    metrics: VersionMetrics | None = None

    @property
    def val(self) -> ValidationSummary | None:
        """A detector's validation summary (None for encoders and unvalidated versions)."""
        return self.metrics.val if isinstance(self.metrics, DetectorVersionMetrics) else None


def _train_sizes(session: Session) -> dict[str, int]:
    """Training-set size per version from its succeeded training run."""
    stmt = select(TrainingRun.model_version_id, TrainingRun.n_train_images).where(
        TrainingRun.model_version_id.is_not(None), TrainingRun.n_train_images.is_not(None)
    )
    return {str(v): int(n) for v, n in session.execute(stmt) if n is not None}


def _train_size(version: ModelVersion, sizes: dict[str, int]) -> int | None:
    if version.id in sizes:
        return sizes[version.id]
    return version.metrics.n_train_images if version.metrics is not None else None


def model_lineage(session: Session) -> list[VersionRow]:
    """Every version oldest first, with its parent, training-set size and active marker."""
    active = set(version_queries.active_model_ids(session).values())
    sizes = _train_sizes(session)
    versions = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at))
    return [
        VersionRow(
            id=v.id,
            kind=v.kind,
            parent_id=v.parent_id,
            created_at=utc(v.created_at),
            status=v.status,
            active=v.id in active,
            n_train_images=_train_size(v, sizes),
            label_space=tuple(str(c) for c in v.label_space),
            metrics=v.metrics,
        )
        for v in versions
    ]


@dataclass(frozen=True)
class PromotionRow:
    at: datetime
    kind: str
    action: str
    model_version_id: str
    previous_version_id: str | None
    actor: str
    reason: str


def promotion_log(session: Session, *, limit: int = 50) -> list[PromotionRow]:
    """Moves of every kind's active pointer, newest first."""
    stmt = select(ModelPromotion).order_by(ModelPromotion.id.desc()).limit(limit)
    return [
        PromotionRow(
            utc(p.at),
            p.kind,
            p.action,
            p.model_version_id,
            p.previous_version_id,
            p.actor,
            p.reason,
        )
        for p in session.scalars(stmt)
    ]


def _value(estimate: Estimate | None) -> float | None:
    return estimate.value if estimate is not None else None


LEARNING_METRICS: dict[str, Callable[[EvaluationMetrics], float | None]] = {
    "map50": lambda m: m.detection.map50,
    "lesion_map50": lambda m: m.detection.lesion_map50,
    "ACC": lambda m: _value(m.screening.rates.acc),
    "SEN": lambda m: _value(m.screening.rates.sen),
    "SPE": lambda m: _value(m.screening.rates.spe),
    "AUC": lambda m: m.screening.auc,
}
"""The learning curve's metrics by the name the dashboard shows."""


@dataclass(frozen=True)
class LearningPoint:
    version_id: str
    kind: str
    series: str  # the curve it belongs to: the model kind until the simulation stores strategies
    created_at: datetime
    n_train_images: int | None
    metrics: dict[str, float | None]


def _headline(metrics: EvaluationMetrics) -> dict[str, float | None]:
    return {name: value(metrics) for name, value in LEARNING_METRICS.items()}


def learning_curve(
    session: Session, *, dataset: str = "all", split: str = "test"
) -> list[LearningPoint]:
    """Learning curve: each version's stored evaluation in version order (oldest first), with
    the training-set size from its training run (or `n_train_images` in its metrics).

    `series` is the version's kind; the simulation's AL-vs-random runs (issue 5) become more
    series here once they are stored.
    """
    sizes = _train_sizes(session)
    stmt = (
        select(ModelVersion, Evaluation.metrics)
        .join(Evaluation, Evaluation.model_version_id == ModelVersion.id)
        .where(Evaluation.dataset == dataset, Evaluation.split == split)
        .order_by(ModelVersion.created_at, ModelVersion.id)
    )
    return [
        LearningPoint(
            version_id=v.id,
            kind=v.kind,
            series=v.kind,
            created_at=utc(v.created_at),
            n_train_images=_train_size(v, sizes),
            metrics=_headline(metrics),
        )
        for v, metrics in session.execute(stmt)
    ]


SimulationCurvePoint = simulation_queries.NewSimulationPoint  # the stored point, detached


def simulation_curves(session: Session) -> list[SimulationCurvePoint]:
    """`labeler simulate`'s learning curves: test-split metrics against expert reviews."""
    return simulation_queries.stored_points(session)
