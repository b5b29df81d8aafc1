"""SQLAlchemy models. Boxes are pixel xyxy (db.schemas.BoxRecord); times are UTC."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.birads import Birads, Pathology
from core.results import (
    DetectorVersionMetrics,
    EncoderVersionMetrics,
    EvaluationMetrics,
    PrelabelSource,
    SimulationMetrics,
)
from db.schemas import (
    BoxList,
    BoxRecord,
    ModelJSON,
    PixelText,
    PixelTextColumn,
    VersionMetricsColumn,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A portable enum column: VARCHAR plus a CHECK constraint on the values."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


class Split(enum.StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class Verdict(enum.StrEnum):
    ACCEPT = "accept"
    CORRECT = "correct"
    REJECT = "reject"


class LabelStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
        list[BoxRecord]: BoxList,
    }


class Patient(Base):
    """A pseudonymous patient key: a dataset's public id or a salted hash of a DICOM PatientID."""

    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    source: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lesion(Base):
    __tablename__ = "lesions"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    """An imported image; `png_path` (relative to LABELER_HOME) is the de-identified 8-bit PNG."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("dataset", "source_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    lesion_id: Mapped[int | None] = mapped_column(ForeignKey("lesions.id"), index=True)
    view: Mapped[str | None] = mapped_column(String(40))
    width: Mapped[int]
    height: Mapped[int]
    mode: Mapped[str] = mapped_column(String(8), doc="PIL mode of the PNG: L or RGB")
    dataset: Mapped[str] = mapped_column(String(40), index=True)
    source_id: Mapped[str | None] = mapped_column(String(120), doc="public dataset id only")
    fold: Mapped[int]
    split: Mapped[Split] = mapped_column(_enum(Split, "split"), index=True)
    png_path: Mapped[str] = mapped_column(String(255), unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    device: Mapped[str | None] = mapped_column(String(120))
    burned_in_annotation: Mapped[bool | None]
    held_reason: Mapped[str | None] = mapped_column(
        String(200), doc="set: held back from Label Studio until `labeler images release`"
    )
    pixel_text: Mapped[PixelText | None] = mapped_column(
        PixelTextColumn, doc="text found in the pixels at import (None: not checked)"
    )
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship()
    lesion: Mapped[Lesion | None] = relationship()
    reference_labels: Mapped[list[ReferenceLabel]] = relationship(back_populates="image")


class ReferenceLabel(Base):
    """A label shipped with a public dataset: for evaluation and simulation, never a review."""

    __tablename__ = "reference_labels"
    __table_args__ = (UniqueConstraint("image_id", "source"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(40))
    birads: Mapped[Birads] = mapped_column(_enum(Birads, "birads"))
    pathology: Mapped[Pathology | None] = mapped_column(_enum(Pathology, "pathology"))
    histology: Mapped[str | None] = mapped_column(Text)
    boxes: Mapped[list[BoxRecord]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship(back_populates="reference_labels")


class ModelVersion(Base):
    """An immutable trained model: its folder never changes once this row exists."""

    __tablename__ = "model_versions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    path: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    label_space: Mapped[list[Any]]
    config: Mapped[dict[str, Any]]
    data_manifest_sha256: Mapped[str] = mapped_column(String(64))
    package_version: Mapped[str] = mapped_column(String(40))
    metrics: Mapped[DetectorVersionMetrics | EncoderVersionMetrics | None] = mapped_column(
        VersionMetricsColumn,
        nullable=False,  # None is stored as JSON null
        default=lambda: None,
        doc="what the version records about itself (None: nothing)",
    )
    status: Mapped[str] = mapped_column(String(20), default="registered")
    checksums: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="sha256 per file of the sealed folder (None: registered before checksums)"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActiveModel(Base):
    """The active pointer per model kind; promote and rollback move it."""

    __tablename__ = "active_models"
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("image_id", "model_version_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    boxes: Mapped[list[BoxRecord]]
    image_birads: Mapped[Birads] = mapped_column(_enum(Birads, "birads"))
    uncertainty: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    malignancy: Mapped[float | None] = mapped_column(
        nullable=True, doc="The image's P(malignant) (calibrated when produced_by says so)."
    )
    produced_by: Mapped[PrelabelSource | None] = mapped_column(
        ModelJSON(PrelabelSource), nullable=True, doc="None: stored before migration 0008"
    )


class Review(Base):
    """One reader's check of one image in one round (a rejected image is reviewed again later)."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("image_id", "reader", "round"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    reader: Mapped[str] = mapped_column(String(80), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict, "verdict"))
    boxes: Mapped[list[BoxRecord]]
    image_birads: Mapped[Birads | None] = mapped_column(_enum(Birads, "birads"))
    pathology: Mapped[Pathology | None] = mapped_column(_enum(Pathology, "pathology"))
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"))
    ls_annotation_id: Mapped[int | None] = mapped_column(unique=True)
    ls_task_id: Mapped[int | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Label(Base):
    """Consensus of the readers for one image and round."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("image_id", "round"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[LabelStatus] = mapped_column(_enum(LabelStatus, "label_status"), index=True)
    boxes: Mapped[list[BoxRecord]]
    birads: Mapped[Birads | None] = mapped_column(_enum(Birads, "birads"))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    decided_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="running")
    config: Mapped[dict[str, Any]]
    parent_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    data_manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    n_train_images: Mapped[int | None]
    epochs_done: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class Evaluation(Base):
    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("model_version_id", "dataset", "split"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(40))
    split: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[EvaluationMetrics] = mapped_column(ModelJSON(EvaluationMetrics))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """Audit log. `detail` holds counts and ids, never patient identifiers or file names."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_subject_at", "subject", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(120))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ModelPromotion(Base):
    """History of the active pointer, one row per move: rollback replays it as a stack."""

    __tablename__ = "model_promotions"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    previous_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    action: Mapped[str] = mapped_column(String(20), doc="promote or rollback")
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class StudioTask(Base):
    """One Label Studio task: an image shown to the readers in one round."""

    __tablename__ = "studio_tasks"
    __table_args__ = (UniqueConstraint("image_id", "round", "ls_project_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    ls_project_id: Mapped[int] = mapped_column(Integer)
    ls_task_id: Mapped[int] = mapped_column(Integer, unique=True)
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StudioEvent(Base):
    """A webhook call from Label Studio, stored as received and processed later by sync."""

    __tablename__ = "studio_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    ls_project_id: Mapped[int | None] = mapped_column(Integer)
    ls_task_id: Mapped[int | None] = mapped_column(Integer)
    ls_annotation_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    processed_at: Mapped[datetime | None] = mapped_column(index=True)
    error: Mapped[str | None] = mapped_column(
        Text, doc="set: the event could not be applied and was set aside with this reason"
    )


class SimulationPoint(Base):
    """One point of a simulated learning curve (`labeler simulate`): metric vs expert reviews."""

    __tablename__ = "simulation_points"
    __table_args__ = (UniqueConstraint("simulation", "round"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    simulation: Mapped[str] = mapped_column(String(120), index=True)
    strategy: Mapped[str] = mapped_column(String(40))
    round: Mapped[int] = mapped_column(Integer)
    reviews: Mapped[int] = mapped_column(Integer, doc="expert reviews so far (3 per image)")
    labeled_images: Mapped[int] = mapped_column(Integer)
    accept_rate: Mapped[float | None]
    metrics: Mapped[SimulationMetrics] = mapped_column(ModelJSON(SimulationMetrics))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
