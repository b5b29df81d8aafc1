"""Images held back for burned-in PHI, and what `labeler status` says about them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import BadInputError
from db.models import Image


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


class UnknownImageIdError(BadInputError, LookupError):
    """No image has the id a user gave."""


def release_image(session: Session, *, image_id: int) -> str | None:
    """Let a held image go to Label Studio; returns the reason it was held (None: it was not).
    Raises UnknownImageIdError for an unknown id."""
    image = session.get(Image, image_id)
    if image is None:
        raise UnknownImageIdError(f"no image with id {image_id}")
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
