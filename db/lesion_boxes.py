"""Lesion boxes for similar-lesion search: confirmed lesions, query boxes, images by public id.

Apart from `db.queries` so the search (labeler/jobs/similar.py, the ML backend and the
dashboard's "Similar lesions" page) reads lesions through one small module. Read-only: nothing
here adds, flushes or commits, so the dashboard's read-only engine can run all of it.

Confirmed lesions are the dataset's reference labels and the readers' accepted labels, one row
per lesion box. An image with both counts once, with its reference label: that one carries the
biopsy pathology, which accepted labels lack.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.birads import Birads, Pathology
from db.models import Image, Label, LabelStatus, Lesion, Patient, Prediction, ReferenceLabel
from db.queries import images as image_queries
from db.queries import predictions as prediction_queries
from db.schemas import BoxRecord

Xyxy = tuple[float, float, float, float]


class BoxOrigin(StrEnum):
    """Where a lesion box comes from; only reference and accepted boxes are confirmed."""

    REFERENCE = "reference"
    ACCEPTED = "accepted"
    PREDICTED = "predicted"


@dataclass(frozen=True)
class LesionBox:
    """One lesion box with what identifies its image, lesion and patient (never printed)."""

    image_id: int
    png_path: str
    box: Xyxy
    origin: BoxOrigin
    birads: Birads | None
    pathology: Pathology | None
    lesion_key: str | None
    patient_key: str
    view: str | None
    dataset: str
    source_id: str | None


@dataclass(frozen=True)
class CropSource:
    """What the dashboard needs to cut a crop and caption it: no patient identifiers."""

    image_id: int
    png_path: str
    width: int
    height: int
    dataset: str
    source_id: str | None


def top_box(boxes: Iterable[BoxRecord]) -> BoxRecord | None:
    """The highest-scoring lesion box with a category: the query box of a prediction."""
    lesions = [b for b in boxes if b.kind == "lesion" and b.birads is not None]
    return max(lesions, key=lambda b: b.score or 0.0, default=None)


class _Keys:
    """lesion id -> key and patient id -> key, read once for many images (not once per image)."""

    def __init__(self, lesions: dict[int, str], patients: dict[int, str]) -> None:
        self.lesions = lesions
        self.patients = patients

    @classmethod
    def all(cls, session: Session) -> _Keys:
        lesions = {i: k for i, k in session.execute(select(Lesion.id, Lesion.key))}
        patients = {i: k for i, k in session.execute(select(Patient.id, Patient.key))}
        return cls(lesions, patients)

    @classmethod
    def of(cls, image: Image) -> _Keys:
        lesions = {image.lesion.id: image.lesion.key} if image.lesion is not None else {}
        return cls(lesions, {image.patient.id: image.patient.key})

    def rows(
        self,
        image: Image,
        boxes: Iterable[BoxRecord],
        pathology: Pathology | None,
        origin: BoxOrigin,
    ) -> list[LesionBox]:
        lesion_key = self.lesions.get(image.lesion_id) if image.lesion_id is not None else None
        return [
            LesionBox(
                image_id=image.id,
                png_path=image.png_path,
                box=box.xyxy,
                origin=origin,
                birads=box.birads,
                pathology=pathology,
                lesion_key=lesion_key,
                patient_key=self.patients[image.patient_id],
                view=image.view,
                dataset=image.dataset,
                source_id=image.source_id,
            )
            for box in boxes
            if box.kind == "lesion" and box.birads is not None
        ]


def confirmed_lesions(session: Session) -> list[LesionBox]:
    """Reference lesion boxes of every image, then accepted boxes of images without one."""
    keys = _Keys.all(session)
    references = image_queries.reference_labels(session)
    with_reference = {image.id for image, _ in references}
    rows = [
        row
        for image, ref in references
        for row in keys.rows(image, ref.boxes, ref.pathology, BoxOrigin.REFERENCE)
    ]
    for image, label in _accepted(session):
        if image.id not in with_reference:
            rows += keys.rows(image, label.boxes, None, BoxOrigin.ACCEPTED)
    return rows


def _accepted(session: Session, *, image_id: int | None = None) -> list[tuple[Image, Label]]:
    """Accepted labels (latest round per image) of every split: the index is a reader aid."""
    stmt = select(Image, Label).join(Label, Label.image_id == Image.id)
    if image_id is not None:
        stmt = stmt.where(Image.id == image_id)
    rows = session.execute(
        stmt.where(Label.status == LabelStatus.ACCEPTED).order_by(Image.id, Label.round)
    )
    return list({image.id: (image, label) for image, label in rows}.values())


def predicted_lesions(
    session: Session, *, model_version_id: str, exclude_image_ids: Collection[int] = ()
) -> list[LesionBox]:
    """The top box of each stored prediction of a version: the query box of a pool image."""
    keys = _Keys.all(session)
    stmt = (
        select(Image, Prediction)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(Prediction.model_version_id == model_version_id)
        .order_by(Image.id)
    )
    rows: list[LesionBox] = []
    for image, prediction in session.execute(stmt):
        top = top_box(prediction.boxes)
        if image.id not in exclude_image_ids and top is not None:
            rows += keys.rows(image, [top], None, BoxOrigin.PREDICTED)
    return rows


def query_box(session: Session, *, image_id: int, model_version_id: str | None) -> LesionBox | None:
    """An image's query box: its first confirmed lesion box, else the version's top box."""
    image = session.get(Image, image_id)
    if image is None:
        return None
    keys = _Keys.of(image)
    references = session.scalars(
        select(ReferenceLabel)
        .where(ReferenceLabel.image_id == image_id)
        .order_by(ReferenceLabel.id)
    )
    rows = [
        row
        for ref in references
        for row in keys.rows(image, ref.boxes, ref.pathology, BoxOrigin.REFERENCE)
    ]
    for _, label in _accepted(session, image_id=image_id):
        rows += keys.rows(image, label.boxes, None, BoxOrigin.ACCEPTED)
    if not rows and model_version_id is not None:
        cached = prediction_queries.cached_prediction(
            session, image_id=image_id, model_version_id=model_version_id
        )
        top = top_box(cached.boxes) if cached is not None else None
        rows = keys.rows(image, [top], None, BoxOrigin.PREDICTED) if top is not None else []
    return rows[0] if rows else None


def image_ids_by_reference(session: Session, *, reference: str) -> list[int]:
    """Images a user names: a database id, or a public dataset source id (`bus_0001-l`)."""
    text = reference.strip()
    if text.isdigit() and session.get(Image, int(text)) is not None:
        return [int(text)]
    stmt = select(Image.id).where(Image.source_id == text).order_by(Image.id)
    return [int(i) for i in session.scalars(stmt)]


def crop_sources(session: Session, *, image_ids: Collection[int]) -> dict[int, CropSource]:
    """Image id -> its PNG and public names, for the images asked about that exist."""
    stmt = select(
        Image.id, Image.png_path, Image.width, Image.height, Image.dataset, Image.source_id
    ).where(Image.id.in_(list(image_ids)))
    return {int(row[0]): CropSource(*row) for row in session.execute(stmt)}
