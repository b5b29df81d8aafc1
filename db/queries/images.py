"""Images, their patients and lesions, and the datasets' reference labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.birads import Birads, Pathology
from core.errors import BadInputError
from db.models import Image, Lesion, Patient, ReferenceLabel, Split, utcnow
from db.schemas import BoxRecord, PixelText
from db.upsert import added, insert_for, insert_ignore


@dataclass(frozen=True)
class NewImage:
    sha256: str
    patient_key: str
    patient_source: str
    lesion_key: str | None
    view: str | None
    width: int
    height: int
    mode: str
    dataset: str
    source_id: str | None
    fold: int
    split: Split
    png_path: str
    modality: str | None = None
    device: str | None = None
    burned_in_annotation: bool | None = None
    held_reason: str | None = None  # set: never sent to Label Studio until released
    pixel_text: PixelText | None = None


@dataclass(frozen=True)
class NewReference:
    source: str
    birads: Birads
    pathology: Pathology | None
    histology: str | None
    boxes: tuple[BoxRecord, ...]


@dataclass(frozen=True)
class ImageCounts:
    total: int
    by_dataset: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_birads: dict[str, int] = field(default_factory=dict)
    by_pathology: dict[str, int] = field(default_factory=dict)
    patients: int = 0
    splits_by_dataset: dict[str, dict[str, int]] = field(default_factory=dict)


def existing_shas(session: Session, *, shas: Iterable[str]) -> set[str]:
    wanted = list(set(shas))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):  # stay below SQLite's bound-parameter limit
        chunk = wanted[start : start + 500]
        found.update(session.scalars(select(Image.sha256).where(Image.sha256.in_(chunk))))
    return found


def get_image(session: Session, *, sha256: str) -> Image | None:
    return session.scalars(select(Image).where(Image.sha256 == sha256)).one_or_none()


def get_or_create_patient(session: Session, *, key: str, source: str) -> Patient:
    """INSERT ... ON CONFLICT (key) DO NOTHING, then read: two importers never collide."""
    row = {"key": key, "source": source, "created_at": utcnow()}
    insert_ignore(session, Patient, [row], keys=["key"])
    return session.scalars(select(Patient).where(Patient.key == key)).one()


class LesionOfAnotherPatientError(BadInputError, ValueError):
    """A lesion key the import gave is already another patient's (two patients' files mixed)."""


def get_or_create_lesion(session: Session, *, key: str, patient: Patient) -> Lesion:
    row = {"key": key, "patient_id": patient.id, "created_at": utcnow()}
    insert_ignore(session, Lesion, [row], keys=["key"])
    lesion = session.scalars(select(Lesion).where(Lesion.key == key)).one()
    if lesion.patient_id != patient.id:
        raise LesionOfAnotherPatientError(f"lesion {key!r} already belongs to another patient")
    return lesion


class SourceIdTakenError(BadInputError, ValueError):
    """Another image (other pixels) of the same dataset already has this source id."""


def put_image(session: Session, *, new: NewImage) -> tuple[Image, bool]:
    """Add an image unless one with its sha256 exists (INSERT ... ON CONFLICT DO NOTHING, so a
    concurrent importer never raises IntegrityError); returns (row, whether this call added it)."""
    patient = get_or_create_patient(session, key=new.patient_key, source=new.patient_source)
    lesion = None
    if new.lesion_key is not None:
        lesion = get_or_create_lesion(session, key=new.lesion_key, patient=patient)
    row = {
        "sha256": new.sha256,
        "patient_id": patient.id,
        "lesion_id": lesion.id if lesion else None,
        "view": new.view,
        "width": new.width,
        "height": new.height,
        "mode": new.mode,
        "dataset": new.dataset,
        "source_id": new.source_id,
        "fold": new.fold,
        "split": new.split,
        "png_path": new.png_path,
        "modality": new.modality,
        "device": new.device,
        "burned_in_annotation": new.burned_in_annotation,
        "held_reason": new.held_reason,
        "pixel_text": new.pixel_text,
        "imported_at": utcnow(),
    }
    new_row = added(session, insert_for(session, Image).values(row).on_conflict_do_nothing())
    image = get_image(session, sha256=new.sha256)
    if image is None:
        raise SourceIdTakenError(
            f"{new.dataset} already has an image with source id {new.source_id!r}"
        )
    return image, new_row


def in_other_splits(session: Session, *, patient_id: int, split: Split) -> bool:
    """Whether the patient has an image outside `split` (a split set by hand can break the
    patient-disjoint folds: the other views may have trained)."""
    stmt = select(Image.id).where(Image.patient_id == patient_id, Image.split != split).limit(1)
    return session.scalar(stmt) is not None


def add_image(session: Session, *, new: NewImage) -> Image:
    return put_image(session, new=new)[0]


def add_reference_label(
    session: Session, *, image_id: int, reference: NewReference
) -> ReferenceLabel | None:
    """Attach a dataset's label to an image; returns None if that source already labeled it
    (INSERT ... ON CONFLICT (image_id, source) DO NOTHING)."""
    row = {
        "image_id": image_id,
        "source": reference.source,
        "birads": reference.birads,
        "pathology": reference.pathology,
        "histology": reference.histology,
        "boxes": list(reference.boxes),
        "created_at": utcnow(),
    }
    stmt = insert_for(session, ReferenceLabel).values(row)
    if not added(session, stmt.on_conflict_do_nothing(index_elements=["image_id", "source"])):
        return None
    return session.scalars(
        select(ReferenceLabel).where(
            ReferenceLabel.image_id == image_id, ReferenceLabel.source == reference.source
        )
    ).one()


def reference_labels(
    session: Session, *, dataset: str | None = None, split: Split | None = None
) -> list[tuple[Image, ReferenceLabel]]:
    stmt = select(Image, ReferenceLabel).join(ReferenceLabel, ReferenceLabel.image_id == Image.id)
    if dataset is not None:
        stmt = stmt.where(Image.dataset == dataset)
    if split is not None:
        stmt = stmt.where(Image.split == split)
    return [(row[0], row[1]) for row in session.execute(stmt.order_by(Image.id)).all()]


def png_paths(session: Session, *, exclude_split: Split | None = None) -> list[str]:
    """Every stored image's PNG (relative to LABELER_HOME), labeled or not, by id."""
    stmt = select(Image.png_path).order_by(Image.id)
    if exclude_split is not None:
        stmt = stmt.where(Image.split != exclude_split)
    return list(session.scalars(stmt))


def dataset_names(session: Session) -> list[str]:
    """The datasets images were imported from, sorted."""
    return list(session.scalars(select(Image.dataset).distinct().order_by(Image.dataset)))


def image_counts(session: Session, *, dataset: str | None = None) -> ImageCounts:
    """Counts for status pages, computed in SQL (GROUP BY), so they stay cheap on large tables."""
    where = [Image.dataset == dataset] if dataset is not None else []

    def grouped(column: Any, *, join_refs: bool = False) -> dict[Any, int]:
        stmt = select(column, func.count()).select_from(Image).where(*where)
        if join_refs:
            stmt = stmt.join(ReferenceLabel, ReferenceLabel.image_id == Image.id)
        rows = session.execute(stmt.group_by(column)).all()
        return {key: int(n) for key, n in rows if key is not None}

    birads = grouped(ReferenceLabel.birads, join_refs=True)
    pathology = grouped(ReferenceLabel.pathology, join_refs=True)
    per_dataset: dict[str, dict[str, int]] = {}
    pairs = session.execute(
        select(Image.dataset, Image.split, func.count())
        .where(*where)
        .group_by(Image.dataset, Image.split)
        .order_by(Image.dataset)
    ).all()
    for name, split, n in pairs:
        per_dataset.setdefault(name, {})[str(split)] = int(n)
    return ImageCounts(
        total=int(session.scalar(select(func.count()).select_from(Image).where(*where)) or 0),
        by_dataset=grouped(Image.dataset),
        by_split={str(k): v for k, v in grouped(Image.split).items()},
        by_birads={c.value: birads[c] for c in Birads if c in birads},
        by_pathology={p.value: pathology[p] for p in Pathology if p in pathology},
        patients=int(
            session.scalar(select(func.count(func.distinct(Image.patient_id))).where(*where)) or 0
        ),
        splits_by_dataset={
            name: {s.value: splits[s.value] for s in Split if s.value in splits}
            for name, splits in per_dataset.items()
        },
    )


def birads_histogram(categories: Iterable[Birads]) -> dict[str, int]:
    """Counts keyed by category value, in BI-RADS order."""
    counts = Counter(categories)
    return {c.value: counts[c] for c in Birads if counts[c]}


def image_by_id(session: Session, *, image_id: int) -> Image | None:
    return session.get(Image, image_id)


def image_by_png_path(session: Session, *, png_path: str) -> Image | None:
    return session.scalars(select(Image).where(Image.png_path == png_path)).one_or_none()
