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

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.birads import Birads, Pathology
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
from db.schemas import BoxRecord


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
    patient = session.scalars(select(Patient).where(Patient.key == key)).one_or_none()
    if patient is None:
        patient = Patient(key=key, source=source)
        session.add(patient)
        session.flush()
    return patient


def get_or_create_lesion(session: Session, *, key: str, patient: Patient) -> Lesion:
    lesion = session.scalars(select(Lesion).where(Lesion.key == key)).one_or_none()
    if lesion is None:
        lesion = Lesion(key=key, patient_id=patient.id)
        session.add(lesion)
        session.flush()
    elif lesion.patient_id != patient.id:
        raise ValueError(f"lesion {key!r} already belongs to another patient")
    return lesion


def add_image(session: Session, *, new: NewImage) -> Image:
    patient = get_or_create_patient(session, key=new.patient_key, source=new.patient_source)
    lesion = None
    if new.lesion_key is not None:
        lesion = get_or_create_lesion(session, key=new.lesion_key, patient=patient)
    image = Image(
        sha256=new.sha256,
        patient_id=patient.id,
        lesion_id=lesion.id if lesion else None,
        view=new.view,
        width=new.width,
        height=new.height,
        mode=new.mode,
        dataset=new.dataset,
        source_id=new.source_id,
        fold=new.fold,
        split=new.split,
        png_path=new.png_path,
        modality=new.modality,
        device=new.device,
        burned_in_annotation=new.burned_in_annotation,
    )
    session.add(image)
    session.flush()
    return image


def add_reference_label(
    session: Session, *, image_id: int, reference: NewReference
) -> ReferenceLabel | None:
    """Attach a dataset's label to an image; returns None if that source already labeled it."""
    exists = session.scalars(
        select(ReferenceLabel.id).where(
            ReferenceLabel.image_id == image_id, ReferenceLabel.source == reference.source
        )
    ).first()
    if exists is not None:
        return None
    label = ReferenceLabel(
        image_id=image_id,
        source=reference.source,
        birads=reference.birads,
        pathology=reference.pathology,
        histology=reference.histology,
        boxes=list(reference.boxes),
    )
    session.add(label)
    return label


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
    for p in predictions:
        session.add(
            Prediction(
                image_id=p.image_id,
                model_version_id=model_version_id,
                boxes=list(p.boxes),
                image_birads=p.image_birads,
                uncertainty=p.uncertainty,
            )
        )


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
    row = StudioTask(
        image_id=image_id,
        round=round,
        ls_project_id=ls_project_id,
        ls_task_id=ls_task_id,
        model_version_id=model_version_id,
    )
    session.add(row)
    session.flush()
    return row


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


def upsert_review(session: Session, *, review: ReviewUpsert) -> Review:
    """Keyed by the Label Studio annotation (or by image, reader, round): safe to repeat."""
    row = (
        session.scalars(
            select(Review).where(Review.ls_annotation_id == review.ls_annotation_id)
        ).one_or_none()
        or session.scalars(
            select(Review).where(
                Review.image_id == review.image_id,
                Review.reader == review.reader,
                Review.round == review.round,
            )
        ).one_or_none()
    )
    if row is None:
        row = Review(image_id=review.image_id, reader=review.reader, round=review.round)
        session.add(row)
    row.verdict = review.verdict
    row.boxes = list(review.boxes)
    row.image_birads = review.image_birads
    row.pathology = review.pathology
    row.prediction_id = review.prediction_id
    row.ls_annotation_id = review.ls_annotation_id
    row.ls_task_id = review.ls_task_id
    session.flush()
    return row


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
) -> Label:
    row = session.scalars(
        select(Label).where(Label.image_id == image_id, Label.round == round)
    ).one_or_none()
    if row is None:
        row = Label(image_id=image_id, round=round)
        session.add(row)
    decided = status is not LabelStatus.PENDING
    if row.status != status or row.decided_at is None:
        row.decided_at = utcnow() if decided else None
    row.status = status
    row.boxes = list(boxes)
    row.birads = birads
    row.model_version_id = model_version_id
    session.flush()
    return row


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
