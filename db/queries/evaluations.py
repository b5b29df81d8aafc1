"""Evaluation results: one per (model version, dataset, split)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.results import EvaluationMetrics
from db.models import Evaluation


def save_evaluation(
    session: Session,
    *,
    model_version_id: str,
    dataset: str,
    split: str,
    metrics: EvaluationMetrics,
) -> Evaluation:
    """Insert or replace: one evaluation per (version, dataset, split)."""
    row = session.scalars(
        select(Evaluation).where(
            Evaluation.model_version_id == model_version_id,
            Evaluation.dataset == dataset,
            Evaluation.split == split,
        )
    ).one_or_none()
    if row is None:
        row = Evaluation(model_version_id=model_version_id, dataset=dataset, split=split)
        session.add(row)
    row.metrics = metrics
    return row


def evaluations(session: Session, *, model_version_id: str) -> list[Evaluation]:
    stmt = select(Evaluation).where(Evaluation.model_version_id == model_version_id)
    return list(session.scalars(stmt.order_by(Evaluation.id)))
