"""Model versions (written once), the active pointer of each kind and its history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.results import DetectorVersionMetrics, EncoderVersionMetrics
from db.models import ActiveModel, ModelPromotion, ModelVersion


def add_model_version(
    session: Session,
    *,
    version_id: str,
    kind: str,
    path: str,
    parent_id: str | None,
    label_space: Sequence[str],
    config: dict[str, Any],
    data_manifest_sha256: str,
    package_version: str,
    metrics: DetectorVersionMetrics | EncoderVersionMetrics | None,
    created_at: datetime,
    checksums: dict[str, str] | None = None,
) -> ModelVersion:
    """Insert a version row (flushed, so a conflict or a bad parent_id raises here)."""
    row = ModelVersion(
        id=version_id,
        kind=kind,
        path=path,
        parent_id=parent_id,
        label_space=list(label_space),
        config=config,
        data_manifest_sha256=data_manifest_sha256,
        package_version=package_version,
        metrics=metrics,
        created_at=created_at,
        checksums=checksums,
    )
    session.add(row)
    session.flush()
    return row


def get_model_version(session: Session, *, version_id: str) -> ModelVersion | None:
    return session.get(ModelVersion, version_id)


def model_versions(session: Session, *, kind: str | None = None) -> list[ModelVersion]:
    """Versions newest first, optionally of one kind."""
    stmt = select(ModelVersion)
    if kind is not None:
        stmt = stmt.where(ModelVersion.kind == kind)
    stmt = stmt.order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    return list(session.scalars(stmt))


def active_model_id(session: Session, *, kind: str) -> str | None:
    return session.scalar(select(ActiveModel.model_version_id).where(ActiveModel.kind == kind))


def active_model_ids(session: Session) -> dict[str, str]:
    """The active version id of every kind that has one."""
    rows = session.execute(select(ActiveModel.kind, ActiveModel.model_version_id)).all()
    return {kind: version_id for kind, version_id in rows}


def set_active_model(session: Session, *, kind: str, version_id: str) -> None:
    pointer = session.get(ActiveModel, kind)
    if pointer is None:
        session.add(ActiveModel(kind=kind, model_version_id=version_id))
    else:
        pointer.model_version_id = version_id
    session.flush()


def add_promotion(
    session: Session,
    *,
    kind: str,
    version_id: str,
    previous_id: str | None,
    action: str,
    actor: str,
    reason: str = "",
) -> ModelPromotion:
    row = ModelPromotion(
        kind=kind,
        model_version_id=version_id,
        previous_version_id=previous_id,
        action=action,
        actor=actor,
        reason=reason,
    )
    session.add(row)
    session.flush()
    return row


def promotion_history(session: Session, *, kind: str) -> list[ModelPromotion]:
    """Every move of one kind's pointer, oldest first."""
    stmt = select(ModelPromotion).where(ModelPromotion.kind == kind).order_by(ModelPromotion.id)
    return list(session.scalars(stmt))
