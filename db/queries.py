"""Every query the application runs, in one place: keyword-only and typed.

`labeler` and `dashboards` call these instead of writing ad-hoc queries, so the schema can change
behind one module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from core.birads import Birads, Pathology
from db.models import (
    ActiveModel,
    Evaluation,
    Event,
    Image,
    Label,
    LabelStatus,
    Lesion,
    ModelPromotion,
    ModelVersion,
    Patient,
    Prediction,
    ReferenceLabel,
    Review,
    SimulationPoint,
    Split,
    StudioEvent,
    StudioTask,
    TrainingRun,
    Verdict,
    utcnow,
)
from db.schemas import BoxRecord, PixelText
from db.upsert import insert_for, insert_ignore, upsert


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


def get_or_create_lesion(session: Session, *, key: str, patient: Patient) -> Lesion:
    row = {"key": key, "patient_id": patient.id, "created_at": utcnow()}
    insert_ignore(session, Lesion, [row], keys=["key"])
    lesion = session.scalars(select(Lesion).where(Lesion.key == key)).one()
    if lesion.patient_id != patient.id:
        raise ValueError(f"lesion {key!r} already belongs to another patient")
    return lesion


class SourceIdTakenError(ValueError):
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
    inserted = session.execute(insert_for(session, Image).values(row).on_conflict_do_nothing())
    image = get_image(session, sha256=new.sha256)
    if image is None:
        raise SourceIdTakenError(
            f"{new.dataset} already has an image with source id {new.source_id!r}"
        )
    return image, getattr(inserted, "rowcount", 0) == 1


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
    inserted = session.execute(stmt.on_conflict_do_nothing(index_elements=["image_id", "source"]))
    if getattr(inserted, "rowcount", 0) != 1:
        return None
    return session.scalars(
        select(ReferenceLabel).where(
            ReferenceLabel.image_id == image_id, ReferenceLabel.source == reference.source
        )
    ).one()


@dataclass(frozen=True)
class HeldImage:
    image_id: int
    dataset: str
    reason: str
    text_regions: int | None  # None: the pixels were not checked for text


def held_images(session: Session) -> list[HeldImage]:
    """Images held back from Label Studio (burned-in PHI), oldest first."""
    rows = session.scalars(
        select(Image).where(Image.held_reason.is_not(None)).order_by(Image.id)
    ).all()
    return [
        HeldImage(
            im.id,
            im.dataset,
            im.held_reason or "",
            len(im.pixel_text.regions) if im.pixel_text and im.pixel_text.checked else None,
        )
        for im in rows
    ]


def release_image(session: Session, *, image_id: int) -> str | None:
    """Let a held image go to Label Studio; returns the reason it was held (None: it was not).
    Raises LookupError for an unknown id."""
    image = session.get(Image, image_id)
    if image is None:
        raise LookupError(f"no image with id {image_id}")
    reason, image.held_reason = image.held_reason, None
    session.flush()
    return reason


@dataclass(frozen=True)
class PhiCounts:
    """What `labeler status` says about burned-in PHI."""

    held: int
    text_found: int
    text_redacted: int
    text_none_found: int
    text_not_checked: int


def phi_counts(session: Session) -> PhiCounts:
    held = session.scalar(
        select(func.count()).select_from(Image).where(Image.held_reason.is_not(None))
    )
    found = redacted = none_found = not_checked = 0
    for text in session.scalars(select(Image.pixel_text)):  # small JSON per image
        if text is None or not text.checked:
            not_checked += 1
        elif text.found:
            found += 1
            redacted += text.redacted
        else:
            none_found += 1
    return PhiCounts(int(held or 0), found, redacted, none_found, not_checked)


def reference_labels(
    session: Session, *, dataset: str | None = None, split: Split | None = None
) -> list[tuple[Image, ReferenceLabel]]:
    stmt = select(Image, ReferenceLabel).join(ReferenceLabel, ReferenceLabel.image_id == Image.id)
    if dataset is not None:
        stmt = stmt.where(Image.dataset == dataset)
    if split is not None:
        stmt = stmt.where(Image.split == split)
    return [(row[0], row[1]) for row in session.execute(stmt.order_by(Image.id)).all()]


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
    return ImageCounts(
        total=int(session.scalar(select(func.count()).select_from(Image).where(*where)) or 0),
        by_dataset=grouped(Image.dataset),
        by_split={str(k): v for k, v in grouped(Image.split).items()},
        by_birads={c.value: birads[c] for c in Birads if c in birads},
        by_pathology={p.value: pathology[p] for p in Pathology if p in pathology},
        patients=int(
            session.scalar(select(func.count(func.distinct(Image.patient_id))).where(*where)) or 0
        ),
    )


def birads_histogram(categories: Iterable[Birads]) -> dict[str, int]:
    """Counts keyed by category value, in BI-RADS order."""
    counts = Counter(categories)
    return {c.value: counts[c] for c in Birads if counts[c]}


def record_event(
    session: Session, *, actor: str, action: str, subject: str, detail: dict[str, Any]
) -> Event:
    event = Event(actor=actor, action=action, subject=subject, detail=detail)
    session.add(event)
    return event


def latest_event_at(session: Session, *, action: str) -> datetime | None:
    """When the newest event of `action` happened (None if never)."""
    return session.scalar(select(func.max(Event.at)).where(Event.action == action))


def count_events(session: Session, *, action: str | None = None) -> int:
    stmt = select(func.count(Event.id))
    if action is not None:
        stmt = stmt.where(Event.action == action)
    return int(session.scalar(stmt) or 0)


# --- model versions: rows are written once; the active pointer and its history move ---


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
    metrics: dict[str, Any],
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


# --- predictions, evaluations, training runs -------------------------------------------------


@dataclass(frozen=True)
class NewPrediction:
    image_id: int
    boxes: tuple[BoxRecord, ...]
    image_birads: Birads
    uncertainty: float


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
            "created_at": utcnow(),
        }
        for p in predictions
    ]
    insert_ignore(session, Prediction, rows, keys=["image_id", "model_version_id"])


def count_predictions(session: Session, *, model_version_id: str) -> int:
    stmt = select(func.count(Prediction.id)).where(Prediction.model_version_id == model_version_id)
    return int(session.scalar(stmt) or 0)


def save_evaluation(
    session: Session,
    *,
    model_version_id: str,
    dataset: str,
    split: str,
    metrics: dict[str, Any],
    confusion_matrices: dict[str, Any],
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
    row.metrics, row.confusion_matrices = metrics, confusion_matrices
    return row


def evaluations(session: Session, *, model_version_id: str) -> list[Evaluation]:
    stmt = select(Evaluation).where(Evaluation.model_version_id == model_version_id)
    return list(session.scalars(stmt.order_by(Evaluation.id)))


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


# --- ML backend: prediction cache -------------------------------------------------------------


def image_by_id(session: Session, *, image_id: int) -> Image | None:
    return session.get(Image, image_id)


def image_by_png_path(session: Session, *, png_path: str) -> Image | None:
    return session.scalars(select(Image).where(Image.png_path == png_path)).one_or_none()


def cached_prediction(
    session: Session, *, image_id: int, model_version_id: str
) -> Prediction | None:
    return session.scalars(
        select(Prediction).where(
            Prediction.image_id == image_id, Prediction.model_version_id == model_version_id
        )
    ).one_or_none()


# --- Label Studio: webhook events and tasks -----------------------------------------------------


@dataclass(frozen=True)
class NewStudioEvent:
    action: str
    payload: dict[str, Any]
    ls_project_id: int | None = None
    ls_task_id: int | None = None
    ls_annotation_id: int | None = None


def add_studio_event(session: Session, *, event: NewStudioEvent) -> StudioEvent:
    row = StudioEvent(
        action=event.action,
        payload=event.payload,
        ls_project_id=event.ls_project_id,
        ls_task_id=event.ls_task_id,
        ls_annotation_id=event.ls_annotation_id,
    )
    session.add(row)
    session.flush()
    return row


def unprocessed_studio_events(session: Session, *, actions: Iterable[str]) -> list[StudioEvent]:
    return list(
        session.scalars(
            select(StudioEvent)
            .where(StudioEvent.processed_at.is_(None), StudioEvent.action.in_(list(actions)))
            .order_by(StudioEvent.id)
        )
    )


def mark_studio_events_processed(session: Session, *, ids: Iterable[int]) -> None:
    session.execute(
        update(StudioEvent).where(StudioEvent.id.in_(list(ids))).values(processed_at=utcnow())
    )


def count_studio_events(session: Session, *, action: str, processed: bool | None = None) -> int:
    query = select(func.count()).select_from(StudioEvent).where(StudioEvent.action == action)
    if processed is not None:
        column = StudioEvent.processed_at
        query = query.where(column.is_not(None) if processed else column.is_(None))
    return int(session.scalar(query) or 0)


def unprocessed_studio_event_ids(session: Session, *, actions: Iterable[str]) -> list[int]:
    return [int(e.id) for e in unprocessed_studio_events(session, actions=actions)]


def claim_studio_event(session: Session, *, event_id: int) -> StudioEvent | None:
    """Mark one waiting event processed and return it; None if it was no longer waiting.

    Written first in the sync's transaction for the event, so the write lock is taken before
    anything is read (SQLite) and the claim commits or rolls back with what the event did.
    """
    claimed = session.execute(
        update(StudioEvent)
        .where(StudioEvent.id == event_id, StudioEvent.processed_at.is_(None))
        .values(processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    return session.get(StudioEvent, event_id, populate_existing=True)


def set_aside_studio_event(session: Session, *, event_id: int, reason: str) -> None:
    """The event cannot be applied: keep it, processed, with the reason (shown in status)."""
    session.execute(
        update(StudioEvent)
        .where(StudioEvent.id == event_id)
        .values(processed_at=utcnow(), error=reason)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class SetAsideEvent:
    id: int
    action: str
    received_at: datetime
    reason: str
    ls_task_id: int | None
    ls_annotation_id: int | None


def count_set_aside_studio_events(session: Session) -> int:
    stmt = select(func.count()).select_from(StudioEvent).where(StudioEvent.error.is_not(None))
    return int(session.scalar(stmt) or 0)


def set_aside_studio_events(session: Session, *, limit: int = 5) -> list[SetAsideEvent]:
    """The newest events the sync set aside, newest first."""
    rows = session.scalars(
        select(StudioEvent)
        .where(StudioEvent.error.is_not(None))
        .order_by(StudioEvent.id.desc())
        .limit(limit)
    )
    return [
        SetAsideEvent(
            e.id, e.action, e.received_at, e.error or "", e.ls_task_id, e.ls_annotation_id
        )
        for e in rows
    ]


def studio_tasks(session: Session, *, ls_project_id: int) -> list[StudioTask]:
    return list(
        session.scalars(select(StudioTask).where(StudioTask.ls_project_id == ls_project_id))
    )


def studio_task(session: Session, *, ls_task_id: int) -> StudioTask | None:
    return session.scalars(
        select(StudioTask).where(StudioTask.ls_task_id == ls_task_id)
    ).one_or_none()


def add_studio_task(
    session: Session,
    *,
    image_id: int,
    round: int,
    ls_project_id: int,
    ls_task_id: int,
    model_version_id: str | None,
) -> StudioTask:
    """Record a task; one already recorded (same task id, or same image, round and project) is
    kept and returned, so two pushes or syncs recording the same task never collide."""
    row = {
        "image_id": image_id,
        "round": round,
        "ls_project_id": ls_project_id,
        "ls_task_id": ls_task_id,
        "model_version_id": model_version_id,
        "created_at": utcnow(),
    }
    insert_ignore(session, StudioTask, [row])
    same_place = select(StudioTask).where(
        StudioTask.image_id == image_id,
        StudioTask.round == round,
        StudioTask.ls_project_id == ls_project_id,
    )
    return studio_task(session, ls_task_id=ls_task_id) or session.scalars(same_place).one()


@dataclass(frozen=True)
class ReviewItem:
    """An image to put in front of the readers, with the pre-label they will check."""

    image_id: int
    round: int
    png_path: str
    width: int
    height: int
    prediction: Prediction


def current_rounds(session: Session) -> dict[int, int]:
    """Round per image: 1, plus one for each time the readers rejected it."""
    rows = session.execute(
        select(Label.image_id, func.count())
        .where(Label.status == LabelStatus.REJECTED)
        .group_by(Label.image_id)
    ).all()
    return {int(image_id): int(n) + 1 for image_id, n in rows}


def review_items(session: Session, *, model_version_id: str) -> list[ReviewItem]:
    """Images the version pre-labeled that still need readers (not accepted, not the test set),
    most uncertain first."""
    accepted = select(Label.image_id).where(Label.status == LabelStatus.ACCEPTED)
    rows = session.execute(
        select(Image, Prediction)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(
            Prediction.model_version_id == model_version_id,
            Image.split != Split.TEST,
            Image.held_reason.is_(None),  # burned-in PHI: only after `labeler images release`
            Image.id.not_in(accepted),
        )
        .order_by(Prediction.uncertainty.desc(), Image.id)
    ).all()
    rounds = current_rounds(session)
    return [
        ReviewItem(img.id, rounds.get(img.id, 1), img.png_path, img.width, img.height, pred)
        for img, pred in rows
    ]


def set_studio_task_version(session: Session, *, ls_task_id: int, model_version_id: str) -> None:
    session.execute(
        update(StudioTask)
        .where(StudioTask.ls_task_id == ls_task_id)
        .values(model_version_id=model_version_id)
    )


# --- Reviews and consensus labels ---------------------------------------------------------------


@dataclass(frozen=True)
class ReviewUpsert:
    image_id: int
    reader: str
    round: int
    verdict: Verdict
    boxes: tuple[BoxRecord, ...]
    image_birads: Birads | None
    pathology: Pathology | None
    prediction_id: int | None
    ls_annotation_id: int
    ls_task_id: int


def upsert_review(session: Session, *, review: ReviewUpsert) -> None:
    """One row per (image, reader, round), carrying its latest annotation: safe to repeat and to
    run from two processes at once (INSERT ... ON CONFLICT)."""
    key = (Review.image_id, Review.reader, Review.round)
    mine = (review.image_id, review.reader, review.round)
    session.execute(  # the annotation moved (another reader or task): its old row goes
        delete(Review)
        .where(Review.ls_annotation_id == review.ls_annotation_id, tuple_(*key) != tuple_(*mine))
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    row = {
        "image_id": review.image_id,
        "reader": review.reader,
        "round": review.round,
        "verdict": review.verdict,
        "boxes": list(review.boxes),
        "image_birads": review.image_birads,
        "pathology": review.pathology,
        "prediction_id": review.prediction_id,
        "ls_annotation_id": review.ls_annotation_id,
        "ls_task_id": review.ls_task_id,
        "created_at": now,
        "updated_at": now,
    }
    keys = ["image_id", "reader", "round"]
    kept = (*keys, "created_at")
    upsert(
        session, Review, row, keys=keys, update=lambda e: {c: e[c] for c in row if c not in kept}
    )


def delete_reviews(session: Session, *, ls_annotation_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Remove reviews whose annotations were deleted; returns the (image, round) they touched."""
    rows = list(
        session.scalars(select(Review).where(Review.ls_annotation_id.in_(list(ls_annotation_ids))))
    )
    touched = [(r.image_id, r.round) for r in rows]
    for row in rows:
        session.delete(row)
    session.flush()
    return touched


def reviews_for(session: Session, *, image_id: int, round: int) -> list[Review]:
    return list(
        session.scalars(
            select(Review)
            .where(Review.image_id == image_id, Review.round == round)
            .order_by(Review.reader)
        )
    )


def review_annotation_ids(session: Session, *, ls_task_ids: Iterable[int]) -> set[int]:
    stmt = select(Review.ls_annotation_id).where(Review.ls_task_id.in_(list(ls_task_ids)))
    return {int(v) for v in session.scalars(stmt) if v is not None}


def upsert_label(
    session: Session,
    *,
    image_id: int,
    round: int,
    status: LabelStatus,
    boxes: Sequence[BoxRecord],
    birads: Birads | None,
    model_version_id: str | None,
) -> None:
    """One consensus per (image, round) (INSERT ... ON CONFLICT). `decided_at` moves only when
    the status changes (or was never set), so a repeated sync keeps the time of the decision."""
    now = utcnow()
    row = {
        "image_id": image_id,
        "round": round,
        "status": status,
        "boxes": list(boxes),
        "birads": birads,
        "model_version_id": model_version_id,
        "decided_at": now if status is not LabelStatus.PENDING else None,
        "updated_at": now,
    }

    def changes(new: Any) -> dict[str, Any]:
        moved = or_(Label.status != new.status, Label.decided_at.is_(None))
        values = {c: new[c] for c in ("status", "boxes", "birads", "model_version_id")}
        values["decided_at"] = case((moved, new.decided_at), else_=Label.decided_at)
        values["updated_at"] = new.updated_at
        return values

    upsert(session, Label, row, keys=["image_id", "round"], update=changes)


def label_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Label.status, func.count()).group_by(Label.status)).all()
    return {str(status): int(n) for status, n in rows}


def labels_by_image(session: Session, *, round: int | None = None) -> dict[int, Label]:
    stmt = select(Label)
    if round is not None:
        stmt = stmt.where(Label.round == round)
    return {row.image_id: row for row in session.scalars(stmt.order_by(Label.round))}


def round_ratings(session: Session, *, round: int) -> dict[int, dict[str, Birads]]:
    """image id -> reader -> the BI-RADS that reader gave, for one round."""
    out: dict[int, dict[str, Birads]] = {}
    stmt = select(Review.image_id, Review.reader, Review.image_birads).where(
        Review.round == round, Review.image_birads.is_not(None)
    )
    for image_id, reader, birads in session.execute(stmt).all():
        if birads is not None:
            out.setdefault(int(image_id), {})[str(reader)] = birads
    return out


def review_rounds(session: Session) -> list[int]:
    return [int(r) for r in session.scalars(select(Review.round).distinct().order_by(Review.round))]


def studio_tasks_for(session: Session, *, image_id: int, round: int) -> list[StudioTask]:
    return list(
        session.scalars(
            select(StudioTask)
            .where(StudioTask.image_id == image_id, StudioTask.round == round)
            .order_by(StudioTask.id.desc())
        )
    )


def accepted_labels(session: Session) -> list[tuple[Image, Label]]:
    """Images the readers accepted (their latest decided round), outside the fixed test set."""
    rows = session.execute(
        select(Image, Label)
        .join(Label, Label.image_id == Image.id)
        .where(Label.status == LabelStatus.ACCEPTED, Image.split != Split.TEST)
        .order_by(Image.id, Label.round)
    ).all()
    return list({img.id: (img, label) for img, label in rows}.values())


def count_accepted_since(session: Session, *, since: datetime | None) -> int:
    stmt = select(func.count()).select_from(Label).where(Label.status == LabelStatus.ACCEPTED)
    if since is not None:
        stmt = stmt.where(Label.decided_at > since)
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True)
class NewSimulationPoint:
    simulation: str
    strategy: str
    round: int
    reviews: int
    labeled_images: int
    accept_rate: float | None
    metrics: dict[str, Any]


def save_simulation_point(session: Session, *, point: NewSimulationPoint) -> None:
    """Insert or replace the (simulation, round) point, so a rerun overwrites its curve."""
    row = session.scalars(
        select(SimulationPoint).where(
            SimulationPoint.simulation == point.simulation, SimulationPoint.round == point.round
        )
    ).one_or_none()
    if row is None:
        row = SimulationPoint(simulation=point.simulation, round=point.round)
        session.add(row)
    row.strategy = point.strategy
    row.reviews = point.reviews
    row.labeled_images = point.labeled_images
    row.accept_rate = point.accept_rate
    row.metrics = point.metrics


def delete_simulation(session: Session, *, simulation: str) -> int:
    """Drop a curve's points (before a rerun writes it again); returns how many."""
    rows = simulation_points(session, simulation=simulation)
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def simulation_points(session: Session, *, simulation: str | None = None) -> list[SimulationPoint]:
    stmt = select(SimulationPoint).order_by(SimulationPoint.simulation, SimulationPoint.round)
    if simulation is not None:
        stmt = stmt.where(SimulationPoint.simulation == simulation)
    return list(session.scalars(stmt))
