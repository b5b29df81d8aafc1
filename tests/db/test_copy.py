"""`labeler db copy --to URL`: a SQLite home with the bundled sample and every kind of row, copied
into PostgreSQL (and, in small batches, into another SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.results import SimulationMetrics
from core.settings import Settings
from db import migrate
from db.copy import copy_database
from db.engine import make_engine, make_session_factory
from db.models import Base, ModelVersion, Patient
from db.queries import simulations as simulation_queries
from db.queries import studio as studio_queries
from labeler.cli import app
from tests.dashboards.seed import seed
from tests.labeler.studio.fake import created, store_event
from tests.postgres import PostgresServer

pytestmark = pytest.mark.sqlite_only  # the source is the SQLite file a home starts with

runner = CliRunner()


def _fill(settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path) -> None:
    """A row in every table: the dashboards' seed, studio rows, a simulation, the sample."""
    with sessions.begin() as session:
        seed(session, settings.home)
        parent = _columns(session.get_one(ModelVersion, "v3"))
        # "a-child" sorts before its parent: the copy must still insert the parent first
        session.add(ModelVersion(**{**parent, "id": "a-child", "parent_id": "v3"}))
        studio_queries.add_studio_task(
            session, image_id=1, round=1, ls_project_id=1, ls_task_id=101, model_version_id="v2"
        )
        metrics = SimulationMetrics(
            version="v1", map50=0.2, lesion_map50=None, auc=0.7, acc=None, sen=None, spe=None
        )
        point = simulation_queries.NewSimulationPoint("s", "random", 0, 0, 10, None, metrics)
        simulation_queries.save_simulation_point(session, point=point)
    store_event(sessions, created({"id": 1, "task": 101}))
    imported = runner.invoke(app, ["import", str(busbra_dir), "--dataset", "busbra", "--json"])
    assert imported.exit_code == 0, imported.output


def _columns(row: ModelVersion) -> dict[str, object]:
    return {c.key: getattr(row, c.key) for c in ModelVersion.__table__.columns}


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def _snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """What the app reads back: every row of every table through the models' column types
    (times as aware UTC: SQLite gives them back naive)."""
    with engine.connect() as conn:
        return {
            t.name: [
                tuple(_utc(v) for v in row)
                for row in conn.execute(select(t).order_by(*t.primary_key.columns))
            ]
            for t in Base.metadata.sorted_tables
        }


def _utc(value: object) -> object:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


@pytest.fixture
def empty_postgres(postgres: PostgresServer) -> Iterator[str]:
    """A database without the schema: the copy migrates it first."""
    url = postgres.create_database(migrated=False)
    yield url
    postgres.drop_database(url)


def test_copy_to_postgresql_keeps_every_row_and_refuses_a_second_copy(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path, empty_postgres: str
) -> None:
    _fill(settings, sessions, busbra_dir)
    target = make_engine(empty_postgres)

    copied = runner.invoke(app, ["db", "copy", "--to", empty_postgres])

    assert copied.exit_code == 0, copied.output
    source = _counts(sessions.kw["bind"])
    assert _counts(target) == source and min(source.values()) > 0  # every table, every row
    for table, rows in source.items():
        assert f"{table}: {rows}\n" in copied.output
    assert _snapshot(target) == _snapshot(sessions.kw["bind"])
    with make_session_factory(target).begin() as session:  # the id sequences were moved on
        session.add(Patient(key="new", source="test"))
    again = runner.invoke(app, ["db", "copy", "--to", empty_postgres])
    assert again.exit_code == 2
    (line,) = again.stderr.strip().splitlines()
    assert line.startswith("error: the target database is not empty (table ")
    target.dispose()


def test_copy_in_small_batches_puts_parents_first(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path, tmp_path: Path
) -> None:
    _fill(settings, sessions, busbra_dir)
    target = make_engine(f"sqlite:///{tmp_path / 'copy.db'}")
    migrate.upgrade(target)

    copied = dict(copy_database(sessions.kw["bind"], target, batch_rows=3))

    assert copied == _counts(sessions.kw["bind"]) == _counts(target)
    assert _snapshot(target) == _snapshot(sessions.kw["bind"])
    target.dispose()
