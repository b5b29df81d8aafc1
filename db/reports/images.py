"""The image browser: every image with its status, and every box drawn on one image."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.birads import Birads
from db.models import Image, Prediction, ReferenceLabel, Review
from db.reports.common import raw
from db.reports.progress import ImageStatus, image_statuses
from db.schemas import BoxRecord


@dataclass(frozen=True)
class ImageListing:
    """Every image for the browser's filters, as columns: ids only, never a patient key or a
    source path. `birads` is the reference category (None: the dataset shipped none)."""

    image_id: tuple[int, ...] = ()
    dataset: tuple[str, ...] = ()
    split: tuple[str, ...] = ()
    birads: tuple[str | None, ...] = ()
    status: tuple[ImageStatus, ...] = ()

    def __len__(self) -> int:
        return len(self.image_id)

    def matching(
        self,
        *,
        birads: Collection[str | None] = (),
        status: Collection[ImageStatus] = (),
        dataset: Collection[str] = (),
    ) -> list[int]:
        """Ids of the images that pass every non-empty filter, in id order."""
        return [
            image_id
            for image_id, d, b, st in zip(
                self.image_id, self.dataset, self.birads, self.status, strict=True
            )
            if (not birads or b in birads)
            and (not status or st in status)
            and (not dataset or d in dataset)
        ]


def image_listing(session: Session) -> ImageListing:
    """Every image with its reference category and current status, by image id."""
    statuses = image_statuses(session)
    refs: dict[int, str] = {}
    stmt = select(ReferenceLabel.image_id, raw(ReferenceLabel.birads))
    for image_id, birads in session.execute(stmt.order_by(ReferenceLabel.id.desc())):
        refs[image_id] = birads  # the first reference label wins
    rows = session.execute(select(Image.id, Image.dataset, raw(Image.split)).order_by(Image.id))
    columns = [(i, d, s, refs.get(i), statuses.get(i, ImageStatus.UNLABELED)) for i, d, s in rows]
    if not columns:
        return ImageListing()
    image_id, dataset, split, birads, status = zip(*columns, strict=True)
    return ImageListing(image_id, dataset, split, birads, status)


@dataclass(frozen=True)
class BoxSet:
    """Boxes one source drew on an image: the dataset, a model version or a reader."""

    source: str  # "reference", "model", "reader"
    name: str  # dataset source, version id or reader
    birads: str | None
    boxes: tuple[BoxRecord, ...]
    detail: str = ""  # verdict and round for readers, uncertainty for models


@dataclass(frozen=True)
class ImageDetail:
    image_id: int
    dataset: str
    split: str
    width: int
    height: int
    png_path: str
    box_sets: tuple[BoxSet, ...]


def _model_detail(pred: Prediction) -> str:
    """Uncertainty, and the grader's P(malignant) saying whether it is calibrated."""
    detail = f"uncertainty {pred.uncertainty:.2f}"
    if pred.malignancy is not None:
        calibrated = pred.produced_by is not None and pred.produced_by.calibrated
        kind = "calibrated" if calibrated else "uncalibrated"
        detail += f", P(malignant) {pred.malignancy:.2f} ({kind})"
    if pred.produced_by is not None and pred.produced_by.splitter is not None:
        detail += f", 4A/4B split by {pred.produced_by.splitter}"
    return detail


def _value(category: Birads | None) -> str | None:
    return category.value if category is not None else None


def image_detail(session: Session, *, image_id: int) -> ImageDetail | None:
    """An image with every box drawn on it: reference, each version's pre-label, each review."""
    image = session.get(Image, image_id)
    if image is None:
        return None
    sets: list[BoxSet] = []
    for ref in session.scalars(
        select(ReferenceLabel)
        .where(ReferenceLabel.image_id == image_id)
        .order_by(ReferenceLabel.id)
    ):
        sets.append(BoxSet("reference", ref.source, ref.birads.value, tuple(ref.boxes)))
    for pred in session.scalars(
        select(Prediction)
        .where(Prediction.image_id == image_id)
        .order_by(Prediction.created_at.desc(), Prediction.id.desc())
    ):
        detail = _model_detail(pred)
        sets.append(
            BoxSet(
                "model", pred.model_version_id, pred.image_birads.value, tuple(pred.boxes), detail
            )
        )
    for review in session.scalars(
        select(Review).where(Review.image_id == image_id).order_by(Review.round, Review.reader)
    ):
        detail = f"round {review.round}, {review.verdict.value}"
        sets.append(
            BoxSet(
                "reader", review.reader, _value(review.image_birads), tuple(review.boxes), detail
            )
        )
    return ImageDetail(
        image.id,
        image.dataset,
        image.split.value,
        image.width,
        image.height,
        image.png_path,
        tuple(sets),
    )


def categories_in_order(values: Iterable[str | None]) -> list[str]:
    """BI-RADS values present in `values`, in BI-RADS order (for filters and chart axes)."""
    present = {v for v in values if v is not None}
    return [c.value for c in Birads if c.value in present]
