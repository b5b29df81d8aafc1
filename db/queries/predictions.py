"""Pre-labels: one stored prediction per (image, model version)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.birads import Birads
from core.results import PrelabelSource
from db.models import Image, Label, LabelStatus, Prediction, Split, utcnow
from db.schemas import BoxRecord
from db.upsert import insert_ignore


@dataclass(frozen=True)
class NewPrediction:
    image_id: int
    boxes: tuple[BoxRecord, ...]
    image_birads: Birads
    uncertainty: float
    malignancy: float | None = None
    produced_by: PrelabelSource | None = None


def images_without_prediction(session: Session, *, model_version_id: str) -> list[tuple[int, str]]:
    """(image id, PNG path) of every image the version has not pre-labeled yet, oldest first."""
    done = select(Prediction.image_id).where(Prediction.model_version_id == model_version_id)
    stmt = select(Image.id, Image.png_path).where(Image.id.not_in(done)).order_by(Image.id)
    return [(int(row[0]), str(row[1])) for row in session.execute(stmt).all()]


def add_predictions(
    session: Session, *, model_version_id: str, predictions: Sequence[NewPrediction]
) -> None:
    """Store pre-labels; one already stored for an (image, version) is kept (the backend and the
    batch job may score the same image at once: the first wins, nobody fails)."""
    rows = [
        {
            "image_id": p.image_id,
            "model_version_id": model_version_id,
            "boxes": list(p.boxes),
            "image_birads": p.image_birads,
            "uncertainty": p.uncertainty,
            "malignancy": p.malignancy,
            "produced_by": p.produced_by,
            "created_at": utcnow(),
        }
        for p in predictions
    ]
    insert_ignore(session, Prediction, rows, keys=["image_id", "model_version_id"])


def count_predictions(session: Session, *, model_version_id: str) -> int:
    stmt = select(func.count(Prediction.id)).where(Prediction.model_version_id == model_version_id)
    return int(session.scalar(stmt) or 0)


def cached_prediction(
    session: Session, *, image_id: int, model_version_id: str
) -> Prediction | None:
    return session.scalars(
        select(Prediction).where(
            Prediction.image_id == image_id, Prediction.model_version_id == model_version_id
        )
    ).one_or_none()


def predicted_images(
    session: Session,
    *,
    model_version_id: str,
    skip_split: Split | None = None,
    skip_held: bool = False,
    skip_status: LabelStatus | None = None,
) -> list[tuple[Image, Prediction]]:
    """Images the version pre-labeled, with that prediction, by image id; optionally without
    one split, without held images, or without images that have a label of `skip_status`."""
    stmt = (
        select(Image, Prediction)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(Prediction.model_version_id == model_version_id)
    )
    if skip_split is not None:
        stmt = stmt.where(Image.split != skip_split)
    if skip_held:
        stmt = stmt.where(Image.held_reason.is_(None))
    if skip_status is not None:
        labeled = select(Label.image_id).where(Label.status == skip_status)
        stmt = stmt.where(Image.id.not_in(labeled))
    return [(image, prediction) for image, prediction in session.execute(stmt.order_by(Image.id))]
