"""Database rows -> LesionSample: one per lesion box, keyed by lesion and patient.

The lesion key says which crops are views of one lesion (the LR loss's positives, MCR's
groups). It is the dataset's lesion id when the image has exactly one lesion box; otherwise
that id cannot tell the boxes apart, and each box is a lesion of its own, as it is for images
without a lesion id. Keys are the stored pseudonymous ones (public dataset ids or salted
hashes), fine inside the data, never printed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from core.birads import Birads, Pathology
from db.models import Image as ImageRow
from db.queries import images as image_queries
from db.queries import labels as label_queries
from db.schemas import BoxRecord
from ml_backend.encoder.data import LesionSample
from ml_backend.encoder.targets import pathology_class


def _pathology(value: Pathology | None) -> int | None:
    if value is None or value is Pathology.NORMAL:
        return None
    return pathology_class(value)


def _lesions(
    image: ImageRow,
    boxes: Sequence[BoxRecord],
    pathology: Pathology | None,
    birads: Birads | None,
    source: str,
) -> list[LesionSample]:
    lesion_boxes = [b for b in boxes if b.kind == "lesion"]
    shared = image.lesion.key if image.lesion is not None and len(lesion_boxes) == 1 else None
    return [
        LesionSample(
            image_id=image.id,
            png_path=image.png_path,
            box=box.xyxy,
            lesion_key=shared or f"image-{image.id}-box-{i}",
            patient_key=image.patient.key,
            fold=image.fold,
            pathology=_pathology(pathology),
            birads=box.birads or birads,
            view=image.view,
            split=image.split.value,
            source=source,
        )
        for i, box in enumerate(lesion_boxes)
    ]


def reference_lesions(session: Session, *, dataset: str | None = None) -> list[LesionSample]:
    """Every lesion box of the datasets' reference labels, with its biopsy pathology."""
    return [
        sample
        for image, ref in image_queries.reference_labels(session, dataset=dataset)
        for sample in _lesions(image, ref.boxes, ref.pathology, ref.birads, "reference")
    ]


def accepted_lesions(session: Session) -> list[LesionSample]:
    """Lesion boxes of the readers' accepted labels (no pathology: readers grade BI-RADS)."""
    return [
        sample
        for image, label in label_queries.accepted_labels(session)
        for sample in _lesions(image, label.boxes, None, label.birads, "accepted")
    ]


def lesion_samples(session: Session, *, include_accepted: bool = True) -> list[LesionSample]:
    """Reference lesions plus accepted reader lesions of images without a reference label.

    An image with both keeps its reference label: it carries the pathology the classifier
    learns from, which a reader's label does not.
    """
    reference = reference_lesions(session)
    if not include_accepted:
        return reference
    seen = {s.image_id for s in reference}
    return reference + [s for s in accepted_lesions(session) if s.image_id not in seen]
