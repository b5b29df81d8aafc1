from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from db.engine import DriverMissingError, make_engine, session_scope
from db.models import Event, Patient, Split
from db.queries import images as image_queries
from db.queries.images import NewImage
from db.reports import database as database_reports
from db.schemas import BoxRecord


def test_sqlite_opens_in_wal_with_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'x.db'}", busy_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "nested" / "x.db").exists()
    engine.dispose()


def test_session_scope_rolls_back_on_error(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), session_scope(sessions) as s:
        s.add(Patient(key="p1", source="test"))
        s.flush()
        raise RuntimeError("boom")
    with sessions() as s:
        assert s.query(Patient).count() == 0


def _insert_reference(s: Session, image_id: int, birads: str) -> None:
    s.execute(
        text(
            "INSERT INTO reference_labels (image_id, source, birads, boxes, created_at) "
            "VALUES (:image_id, 'x', :birads, '[]', '2026-01-01')"
        ),
        {"image_id": image_id, "birads": birads},
    )


def test_database_refuses_unknown_birads_and_dangling_keys(sessions: sessionmaker[Session]) -> None:
    new = NewImage(
        sha256="0" * 64,
        patient_key="p",
        patient_source="t",
        lesion_key=None,
        view=None,
        width=10,
        height=10,
        mode="L",
        dataset="folder",
        source_id=None,
        fold=1,
        split=Split.TEST,
        png_path="images/00/x.png",
    )
    with sessions.begin() as s:
        image_id = image_queries.add_image(s, new=new).id
        _insert_reference(s, image_id, "4B")  # a valid row goes in
    with sessions() as s, pytest.raises(IntegrityError, match=r"(?i)check"):
        _insert_reference(s, image_id, "7")
    with sessions() as s, pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        _insert_reference(s, 999, "4")


def test_box_list_round_trips_and_validates(sessions: sessionmaker[Session]) -> None:
    box = BoxRecord(xyxy=(1, 2, 30, 40), birads=Birads.B4A, score=0.9, probs={Birads.B4A: 0.9})
    with sessions.begin() as s:
        s.add(Event(actor="t", action="a", subject="s", detail={"n": 1}))
    assert BoxRecord.model_validate(box.model_dump(mode="json")) == box
    with pytest.raises(ValueError, match="x0<=x1"):
        BoxRecord(xyxy=(10, 0, 5, 5))
    with pytest.raises(ValueError, match="non-finite"):
        BoxRecord(xyxy=(0, 0, float("inf"), 5))
    from db.schemas import BoxList

    column = BoxList()
    stored = column.process_bind_param([box], dialect=None)  # type: ignore[arg-type]
    assert column.process_result_value(stored, dialect=None) == [box]  # type: ignore[arg-type]
    with pytest.raises((ValueError, StatementError)):
        column.process_bind_param([{"xyxy": [0, 0, 1, 1], "birads": "9"}], dialect=None)  # type: ignore[list-item, arg-type]


def test_postgresql_urls_use_psycopg_3_and_the_dashboard_cannot_write(postgres_url: str) -> None:
    bare = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    engine = make_engine(bare + "?application_name=site")
    assert engine.dialect.driver == "psycopg"  # SQLAlchemy's default would be psycopg2
    reader = database_reports.readonly_engine(bare + "?options=-c%20statement_timeout%3D1234")
    with engine.connect() as conn, reader.connect() as ro:
        assert conn.scalar(text("SHOW application_name")) == "site"  # the URL's own wins
        assert conn.scalar(text("SHOW default_transaction_read_only")) == "off"
        assert ro.scalar(text("SHOW application_name")) == "labeler"
        assert ro.scalar(text("SHOW default_transaction_read_only")) == "on"
        assert ro.scalar(text("SHOW statement_timeout")) == "1234ms"  # the URL's options kept
    engine.dispose()
    reader.dispose()
    with pytest.raises(DriverMissingError, match="Python driver pg8000"):
        make_engine("postgresql+pg8000://u@127.0.0.1:1/db")
