"""db.queries.phi: held images, their release, and the OCR counts `labeler status` shows."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ExitCode
from db.queries import images as image_queries
from db.queries import phi as phi_queries
from db.schemas import PixelText
from tests.db.rows import new_image

FOUND = PixelText(checked=True, engine="t", regions=((0, 0, 5, 5), (9, 9, 12, 12)))


def _seed(sessions: sessionmaker[Session]) -> list[int]:
    texts = [FOUND, PixelText(checked=True, regions=((1, 1, 2, 2),), redacted=True), None]
    with sessions.begin() as s:
        held = image_queries.add_image(
            s, new=new_image(1, held_reason="burned-in", pixel_text=texts[0])
        )
        redacted = image_queries.add_image(s, new=new_image(2, pixel_text=texts[1]))
        unchecked = image_queries.add_image(s, new=new_image(3, pixel_text=texts[2]))
        clean = image_queries.add_image(s, new=new_image(4, pixel_text=PixelText(checked=True)))
        return [held.id, redacted.id, unchecked.id, clean.id]


def test_held_images_and_counts(sessions: sessionmaker[Session]) -> None:
    held_id, *_ = _seed(sessions)
    with sessions() as s:
        held = phi_queries.held_images(s)
        counts = phi_queries.phi_counts(s)
    assert held == [phi_queries.HeldImage(held_id, "folder", "burned-in", 2)]
    assert counts == phi_queries.PhiCounts(
        held=1, text_found=2, text_redacted=1, text_none_found=1, text_not_checked=1
    )


def test_release_returns_the_reason_once(sessions: sessionmaker[Session]) -> None:
    held_id, other, *_ = _seed(sessions)
    with sessions.begin() as s:
        assert phi_queries.release_image(s, image_id=held_id) == "burned-in"
        assert phi_queries.release_image(s, image_id=held_id) is None
        assert phi_queries.release_image(s, image_id=other) is None
        with pytest.raises(phi_queries.UnknownImageIdError, match="999") as raised:
            phi_queries.release_image(s, image_id=999)
        assert raised.value.exit_code == ExitCode.BAD_INPUT
    with sessions() as s:
        assert phi_queries.held_images(s) == []
        assert phi_queries.phi_counts(s).held == 0
