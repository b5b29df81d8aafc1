"""What a round is: every image starts in round 1, and each rejection by the readers sends it to
the next round (a fresh pre-label, fresh reviews)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.queries import labels as label_queries


def current_rounds(session: Session) -> dict[int, int]:
    """Round per image that was ever rejected: 1, plus one for each rejection; absent: round 1."""
    return {image_id: n + 1 for image_id, n in label_queries.rejection_counts(session).items()}
