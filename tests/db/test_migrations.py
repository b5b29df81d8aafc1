"""Migrations on a fresh database (SQLite and PostgreSQL): up, down, up again, and the models
match the migrations."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

from core.settings import Settings
from db import migrate
from db.engine import make_engine
from db.models import Base, Evaluation, SimulationPoint

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


@pytest.mark.no_schema
def test_upgrade_downgrade_upgrade_on_a_fresh_database(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
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


@pytest.mark.no_schema
def test_models_and_migrations_agree(settings: Settings) -> None:
    """A model change without a migration shows up here as a diff."""
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
    engine.dispose()


@pytest.mark.no_schema
def test_images_sha256_is_unique_in_the_schema(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    uniques = inspect(engine).get_unique_constraints("images")
    assert ["sha256"] in [u["column_names"] for u in uniques]
    engine.dispose()


@pytest.mark.no_schema
def test_a_migration_waits_while_another_holds_the_lock(settings: Settings) -> None:
    """The lock every migration takes (a file beside SQLite, an advisory lock on PostgreSQL): a
    second migrator waits for it, then finds the schema there and finishes."""
    engine = make_engine(settings.db_url)
    done = threading.Event()

    def second() -> None:
        other = make_engine(settings.db_url)
        migrate.upgrade(other)
        other.dispose()
        done.set()

    thread = threading.Thread(target=second)
    with migrate._one_migrator(engine):
        thread.start()
        assert not done.wait(1.0)  # blocked on the lock, not migrating
        assert migrate.current_revision(engine) is None
    thread.join(60)
    assert done.is_set() and migrate.current_revision(engine) == migrate.head_revision()
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


OLD_EVALUATION = {  # the evaluator's dict before 0006 (abridged: two categories, no 4A/4B)
    "n_images": 4,
    "score_threshold": 0.5,
    "map50": 0.41,
    "map50_95": 0.2,
    "lesion_map50": 0.66,
    "lesion_map50_95": 0.3,
    "lesion_recall50": 0.75,
    "fp_per_image": 0.25,
    "birads": {
        "2": {
            "ACC": {"value": 0.75, "ci_low": 0.3, "ci_high": 0.95, "successes": 3, "total": 4},
            "SEN": {"value": 1.0, "ci_low": 0.34, "ci_high": 1.0, "successes": 2, "total": 2},
            "SPE": {"value": 0.5, "ci_low": 0.09, "ci_high": 0.9, "successes": 1, "total": 2},
        },
        "5": {"ACC": None, "SEN": None, "SPE": None},
    },
    "screening": {
        "plain_4_counted_as": "malignant",
        "ACC": {"value": 0.75, "ci_low": 0.3, "ci_high": 0.95, "successes": 3, "total": 4},
        "SEN": None,
        "SPE": None,
        "auc": 0.8,
        "sen_at_spe80": 0.5,
        "roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0]},
        "pathology_auc": 0.9,
        "n_with_pathology": 3,
    },
    "birads4_split": {
        "labels": ["4A", "4B"],
        "confusion_matrix": [[1, 0], [1, 1]],
        "positive": "4B",
        "ACC": None,
        "SEN": None,
        "SPE": None,
        "threshold": 0.35,
        "n_images": 3,
        "splits": ["test"],
    },
}
OLD_MATRICES = {
    "birads": {
        "labels": ["2", "5"],
        "counts": [[2, 0], [1, 1]],
        "row_normalised": [[1, 0], [0.5, 0.5]],
    },
    "screening": {
        "labels": ["benign", "malignant"],
        "counts": [[2, 0], [1, 1]],
        "row_normalised": [[1, 0], [0.5, 0.5]],
    },
}
OLD_SIMULATION = {
    "map50": 0.2,
    "lesion_map50": 0.3,
    "auc": 0.7,
    "acc": 0.6,
    "sen": None,
    "spe": 0.5,
    "version": "v1",
}


def _insert_old_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_versions (id, kind, path, label_space, config, "
                "data_manifest_sha256, package_version, metrics, status, created_at) VALUES "
                "('v1', 'detector', 'models/v1', '[]', '{}', :sha, '0.1', '{}', 'registered', "
                "'2026-11-01 00:00:00')"
            ),
            {"sha": "0" * 64},
        )
        rows = [(1, OLD_EVALUATION, OLD_MATRICES), (2, {"map50": 0.3}, {})]  # 2: hand-made
        for row_id, metrics, matrices in rows:
            conn.execute(
                text(
                    "INSERT INTO evaluations VALUES (:id, 'v1', 'all', :split, :m, :c, "
                    "'2026-11-01 00:00:00')"
                ),
                {
                    "id": row_id,
                    "split": f"s{row_id}",
                    "m": json.dumps(metrics),
                    "c": json.dumps(matrices),
                },
            )
        conn.execute(
            text(
                "INSERT INTO simulation_points (simulation, strategy, round, reviews, "
                "labeled_images, accept_rate, metrics, created_at) VALUES "
                "('sim', 'random', 0, 0, 10, NULL, :m, '2026-11-01 00:00:00')"
            ),
            {"m": json.dumps(OLD_SIMULATION)},
        )


@pytest.mark.no_schema
def test_0006_types_stored_metrics_and_downgrades_them_back(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine, "0005")
    _insert_old_rows(engine)
    migrate.upgrade(engine)
    assert "confusion_matrices" not in {
        c["name"] for c in inspect(engine).get_columns("evaluations")
    }
    with Session(engine) as session:
        full, made = session.scalars(select(Evaluation).order_by(Evaluation.id)).all()
        point = session.scalars(select(SimulationPoint)).one()
        full_metrics, made_metrics, sim = full.metrics, made.metrics, point.metrics
    assert full_metrics.schema_version == 1 and full_metrics.split_manifest_sha256 is None
    assert full_metrics.detection.lesion_recall50 == 0.75
    assert full_metrics.birads.matrix.counts == ((2, 0), (1, 1))
    two = full_metrics.birads.per_category["2"]
    assert (
        two.sen is not None
        and two.sen.successes == 2
        and full_metrics.birads.per_category["5"].acc is None
    )
    s = full_metrics.screening
    assert (s.plain_4_counted_as, s.auc, s.sen_at_spe80, s.n_with_pathology) == (
        "malignant",
        0.8,
        0.5,
        3,
    )
    assert s.roc is not None and s.roc.tpr == (0.0, 1.0, 1.0)
    assert (
        s.rates.acc is not None
        and s.rates.acc.value == 0.75
        and s.matrix.labels == ("benign", "malignant")
    )
    split = full_metrics.birads4_split
    assert split is not None and split.matrix.counts == ((1, 0), (1, 1)) and split.threshold == 0.35
    # A row not written by the evaluator gets empty tables, not a failure on every read.
    assert made_metrics.detection.map50 == 0.3 and made_metrics.birads.matrix.labels == ()
    assert made_metrics.birads4_split is None and made_metrics.screening.rates.acc is None
    assert sim.version == "v1" and (sim.map50, sim.sen, sim.spe) == (0.2, None, 0.5)

    migrate.downgrade(engine, "0005")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT CAST(metrics AS TEXT), CAST(confusion_matrices AS TEXT) FROM evaluations "
                "ORDER BY id"
            )
        ).all()
        old_point = conn.scalar(text("SELECT CAST(metrics AS TEXT) FROM simulation_points"))
    metrics, matrices = json.loads(rows[0][0]), json.loads(rows[0][1])
    assert metrics == OLD_EVALUATION and matrices == OLD_MATRICES
    assert json.loads(old_point) == OLD_SIMULATION
    engine.dispose()
