"""No database, an empty one, an old schema: a first-run page that says what to run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from core.settings import Settings
from db import migrate
from db.engine import make_engine
from db.reports.database import sqlite_file


def _shown(at: AppTest) -> str:
    parts = [*(s.value for s in at.subheader), *(c.value for c in at.code)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.sqlite_only  # a PostgreSQL database is never missing: the server refuses to connect
def test_missing_database_says_run_demo_and_creates_nothing(
    settings: Settings, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page(None)
    assert "There is no database yet." in _shown(at)
    assert "labeler demo" in _shown(at)
    db_file = sqlite_file(settings.db_url)
    assert db_file is not None and not db_file.exists()  # read-only: never created
    assert not settings.home.exists()


def test_empty_database_says_import(
    sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page(None)
    shown = _shown(at)
    assert "holds no images yet" in shown
    assert "labeler demo" in shown and "labeler import" in shown
    assert [t.value for t in at.title] == ["BI-RADS labeler"]  # no dashboard page behind it


@pytest.mark.no_schema
def test_database_without_schema_says_init(
    settings: Settings, open_page: Callable[[str | None], AppTest]
) -> None:
    engine = make_engine(settings.db_url)
    with engine.connect():  # an empty SQLite file: no schema at all
        pass
    engine.dispose()
    assert "labeler init" in _shown(open_page(None))


@pytest.mark.no_schema
def test_outdated_schema_says_upgrade(
    settings: Settings, open_page: Callable[[str | None], AppTest]
) -> None:
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine, "0001")
    engine.dispose()
    at = open_page(None)
    assert "labeler db upgrade" in _shown(at)
    assert migrate.head_revision() in "\n".join(str(m.value) for m in at.markdown)
