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
