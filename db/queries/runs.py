"""Training runs: started, finished or left unfinished (to resume)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import TrainingRun


def start_training_run(
    session: Session, *, kind: str, config: dict[str, Any], n_train_images: int, manifest: str
) -> TrainingRun:
    run = TrainingRun(
        kind=kind,
        config=config,
        status="running",
        n_train_images=n_train_images,
        data_manifest_sha256=manifest,
    )
    session.add(run)
    session.flush()
    return run


def unfinished_training_run(session: Session, *, kind: str, manifest: str) -> TrainingRun | None:
    """The newest run of this kind on the same data that never finished (killed or failed)."""
    stmt = (
        select(TrainingRun)
        .where(
            TrainingRun.kind == kind,
            TrainingRun.data_manifest_sha256 == manifest,
            TrainingRun.status != "succeeded",
        )
        .order_by(TrainingRun.id.desc())
    )
    return session.scalars(stmt).first()


def finish_training_run(
    session: Session,
    *,
    run_id: int,
    status: str,
    epochs_done: int,
    model_version_id: str | None = None,
    error: str | None = None,
) -> None:
    run = session.get_one(TrainingRun, run_id)
    run.status, run.epochs_done, run.error = status, epochs_done, error
    run.model_version_id = model_version_id
    run.finished_at = datetime.now(UTC)
