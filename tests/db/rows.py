"""Small row builders for the query tests: images, a model version, metrics (no training)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from core.birads import Birads, Reading
from core.results import (
    BinaryRates,
    BiradsTable,
    ConfusionMatrix,
    DetectionScores,
    DetectorVersionMetrics,
    EncoderVersionMetrics,
    EvaluationMetrics,
    Screening,
)
from db.models import Image, LabelStatus, ModelVersion, Split
from db.queries import images as image_queries
from db.queries import labels as label_queries
from db.queries import versions as version_queries
from db.schemas import PixelText

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_image(
    n: int,
    *,
    dataset: str = "folder",
    split: Split = Split.TRAIN,
    patient: str | None = None,
    held_reason: str | None = None,
    pixel_text: PixelText | None = None,
) -> image_queries.NewImage:
    """Image number `n`: its own sha256, PNG path and source id."""
    return image_queries.NewImage(
        sha256=f"{n:064x}",
        patient_key=patient or f"patient-{n}",
        patient_source=dataset,
        lesion_key=None,
        view=None,
        width=200,
        height=100,
        mode="L",
        dataset=dataset,
        source_id=f"src-{n}",
        fold=n % 5,
        split=split,
        png_path=f"images/{n}.png",
        held_reason=held_reason,
        pixel_text=pixel_text,
    )


def add_images(
    session: Session,
    count: int,
    *,
    first: int = 1,
    dataset: str = "folder",
    split: Split = Split.TRAIN,
) -> list[Image]:
    """Images first .. first + count - 1."""
    return [
        image_queries.add_image(session, new=new_image(n, dataset=dataset, split=split))
        for n in range(first, first + count)
    ]


def add_version(
    session: Session,
    version_id: str = "v1",
    *,
    kind: str = "detector",
    at: datetime = T0,
    label_space: Sequence[str] = ("2", "3"),
    metrics: DetectorVersionMetrics | EncoderVersionMetrics | None = None,
) -> ModelVersion:
    """A version row with placeholder fields (no folder, no training): one builder, so a new
    column is added here and not in every test that needs a version to exist."""
    return version_queries.add_model_version(
        session,
        version_id=version_id,
        kind=kind,
        path=f"models/{version_id}",
        parent_id=None,
        label_space=label_space,
        config={},
        data_manifest_sha256="0" * 64,
        package_version="0",
        metrics=metrics,
        created_at=at,
    )


def add_label(session: Session, image_id: int, round: int, status: LabelStatus) -> None:
    """The readers' decision on one round (accepted: BI-RADS 2, no boxes)."""
    label_queries.upsert_label(
        session,
        image_id=image_id,
        round=round,
        status=status,
        boxes=[],
        birads=Birads.B2 if status is LabelStatus.ACCEPTED else None,
        model_version_id=None,
    )


def metrics(map50: float, *, n_images: int = 4) -> EvaluationMetrics:
    """Evaluation metrics with only the headline numbers set."""
    matrix = ConfusionMatrix(labels=("benign", "malignant"), counts=((2, 0), (1, 1)))
    return EvaluationMetrics(
        n_images=n_images,
        score_threshold=0.5,
        detection=DetectionScores(map50=map50),
        birads=BiradsTable(matrix=matrix, per_category={}),
        screening=Screening(
            plain_4_counted_as=Reading.MALIGNANT,
            matrix=matrix,
            rates=BinaryRates(),
            auc=None,
            sen_at_spe80=None,
            roc=None,
        ),
    )
