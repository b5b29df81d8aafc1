"""db.queries.versions: version rows, the active pointer per kind and its history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.queries import versions as version_queries
from tests.db.rows import T0, add_version


def test_versions_newest_first_by_kind(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "d1", at=T0)
        add_version(s, "d2", at=T0 + timedelta(days=1))
        add_version(s, "e1", kind="encoder", at=T0 + timedelta(days=2))
    with sessions() as s:
        assert [v.id for v in version_queries.model_versions(s)] == ["e1", "d2", "d1"]
        assert [v.id for v in version_queries.model_versions(s, kind="detector")] == ["d2", "d1"]
        got = version_queries.get_model_version(s, version_id="d1")
        assert got is not None and got.label_space == ["2", "3"]
        assert version_queries.get_model_version(s, version_id="nope") is None


def test_a_version_id_is_written_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "d1")
    with sessions() as s, pytest.raises(IntegrityError):
        add_version(s, "d1")


def test_active_pointer_and_promotion_history(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "d1")
        add_version(s, "d2")
        add_version(s, "e1", kind="encoder")
        assert version_queries.active_model_id(s, kind="detector") is None
        version_queries.set_active_model(s, kind="detector", version_id="d1")
        version_queries.add_promotion(
            s, kind="detector", version_id="d1", previous_id=None, action="promote", actor="a"
        )
        version_queries.set_active_model(s, kind="detector", version_id="d2")
        version_queries.add_promotion(
            s,
            kind="detector",
            version_id="d2",
            previous_id="d1",
            action="promote",
            actor="b",
            reason="better",
        )
        version_queries.set_active_model(s, kind="encoder", version_id="e1")
    with sessions() as s:
        assert version_queries.active_model_id(s, kind="detector") == "d2"
        assert version_queries.active_model_ids(s) == {"detector": "d2", "encoder": "e1"}
        history = version_queries.promotion_history(s, kind="detector")
        assert [(p.model_version_id, p.previous_version_id, p.reason) for p in history] == [
            ("d1", None, ""),
            ("d2", "d1", "better"),
        ]
        assert version_queries.promotion_history(s, kind="encoder") == []
