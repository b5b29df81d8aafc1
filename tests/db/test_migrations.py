"""Migrations on a fresh SQLite file: up, down, up again, and the models match the migrations."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from db import migrate
from db.engine import make_engine
from db.models import Base

TABLES = {
    "patients",
    "lesions",
    "images",
    "reference_labels",
    "model_versions",
    "active_models",
    "predictions",
    "reviews",
    "labels",
    "training_runs",
    "evaluations",
    "events",
    "model_promotions",
    "studio_tasks",
    "studio_events",
    "simulation_points",
}


def test_upgrade_downgrade_upgrade_on_a_fresh_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}

    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}

    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    engine.dispose()


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    """A model change without a migration shows up here as a diff."""
    engine = make_engine(f"sqlite:///{tmp_path / 'cmp.db'}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
    engine.dispose()


def test_images_sha256_is_unique_in_the_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    migrate.upgrade(engine)
    uniques = inspect(engine).get_unique_constraints("images")
    assert ["sha256"] in [u["column_names"] for u in uniques]
    engine.dispose()


def test_first_commands_on_a_new_home_migrate_one_at_a_time(tmp_path: Path) -> None:
    """Several processes migrating one new SQLite file at once: SQLite runs DDL outside a
    transaction, so without the lock the second dies with "table ... already exists"."""
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = (
        "import sys, time; from db import migrate; from db.engine import make_engine; "
        "engine = make_engine(sys.argv[1]); time.sleep(max(0.0, float(sys.argv[2]) - time.time()));"
        " migrate.upgrade(engine)"
    )
    start = str(time.time() + 4.0)  # all start migrating at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, start], stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert migrate.current_revision(make_engine(url)) == migrate.head_revision()
