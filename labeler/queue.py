"""The review queue: which pre-labeled images go to the readers, in which order.

An image waits for readers until a round of it is accepted. The fixed test set never goes (it
would leak into training), nor an image held for burned-in PHI until `labeler images release`.
The most uncertain pre-label goes first; ties by image id, so the order is stable.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.models import LabelStatus, Prediction, Split
from db.queries import predictions as prediction_queries
from labeler.rounds import current_rounds


@dataclass(frozen=True)
class ReviewItem:
    """An image to put in front of the readers, with the pre-label they will check."""

    image_id: int
    round: int
    png_path: str
    width: int
    height: int
    prediction: Prediction


def review_items(session: Session, *, model_version_id: str) -> list[ReviewItem]:
    """Images the version pre-labeled that still need readers, most uncertain first."""
    rows = prediction_queries.predicted_images(
        session,
        model_version_id=model_version_id,
        skip_split=Split.TEST,
        skip_held=True,
        skip_status=LabelStatus.ACCEPTED,
    )
    rows.sort(key=lambda row: (-row[1].uncertainty, row[0].id))
    rounds = current_rounds(session)
    return [
        ReviewItem(img.id, rounds.get(img.id, 1), img.png_path, img.width, img.height, pred)
        for img, pred in rows
    ]
