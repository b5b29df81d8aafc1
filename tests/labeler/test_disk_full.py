"""A full disk, for real (a small tmpfs, filled): one line, exit code 7, valid JSON under --json,
and no temporary file left behind, wherever the command was writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import (
    import_sample,
    known_prelabel,
    register_encoder,
    register_random_detector,
)
from core.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory
from db.models import Image, LabelStatus, Split
from db.queries import labels as label_queries
from db.queries import versions as version_queries
from tests.conftest import fill_disk

runner = CliRunner()
Mount = Callable[[Path, str], Path]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labeler.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ | {"LABELER_HOME": str(settings.home), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def _assert_disk_full(done: subprocess.CompletedProcess[str], where: Path) -> None:
    assert done.returncode == 7, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith("error: no space left"), lines
    said = json.loads(done.stdout)
    assert said["exit_code"] == 7 and said["error"].startswith("no space left")
    left = [p for p in where.rglob("*") if ".tmp" in p.name]
    assert left == [], left


def test_a_database_that_cannot_open_on_a_full_disk(settings: Settings, small_disk: Mount) -> None:
    """SQLite says "disk I/O error" when its shared-memory file cannot be made: still exit 7."""
    small_disk(settings.home, "2m")
    assert _cli(settings, "init").returncode == 0  # exits: the -wal and -shm files go
    fill_disk(settings.home)
    for args in (["status", "--json"], ["retrain", "--json"]):
        _assert_disk_full(_cli(settings, *args), settings.home)


def test_database_writes_on_a_full_disk(
    settings: Settings, busbra_dir: Path, small_disk: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_FULL ("database or disk is full") while `labeler predict` stores its rows."""
    folder = small_disk(settings.home.parent / "db", "1m")
    monkeypatch.setenv("LABELER_DB_URL", f"sqlite:///{folder / 'labeler.db'}")
    on_small = Settings(_env_file=None)
    engine = make_engine(on_small.db_url)
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    import_sample(on_small, sessions, busbra_dir, "busbra")
    register_random_detector(on_small, sessions)
    with engine.connect():  # held open: the WAL and its index stay, so writes hit SQLITE_FULL
        fill_disk(folder)
        done = _cli(on_small, "predict", "--json")
    engine.dispose()
    _assert_disk_full(done, folder)
    assert "database or disk is full" in done.stderr


def test_the_similar_lesion_index_on_a_full_disk(
    settings: Settings,
    sessions: sessionmaker[Session],
    busbra_dir: Path,
    small_disk: Mount,
) -> None:
    import_sample(settings, sessions, busbra_dir, "busbra")
    register_encoder(settings, sessions)
    indexes = small_disk(settings.home / "indexes", "64k")
    fill_disk(indexes)
    _assert_disk_full(_cli(settings, "encoder", "index", "--json"), settings.home)


def _accept(sessions: sessionmaker[Session], n: int) -> None:
    """n training images accepted by readers: a training set of n, trained in one step."""
    with sessions.begin() as session:
        images = session.scalars(
            select(Image).where(Image.split == Split.TRAIN).order_by(Image.id).limit(n)
        ).all()
        for image in images:
            p = known_prelabel(image.width, image.height)
            label_queries.upsert_label(
                session,
                image_id=image.id,
                round=1,
                status=LabelStatus.ACCEPTED,
                boxes=p.boxes,
                birads=p.image_birads,
                model_version_id=None,
            )


def test_a_training_checkpoint_on_a_full_disk(
    settings: Settings,
    sessions: sessionmaker[Session],
    busbra_dir: Path,
    small_disk: Mount,
) -> None:
    """(Registering weights on a full disk: tests/ml_backend/registry.)"""
    import_sample(settings, sessions, busbra_dir, "busbra")
    _accept(sessions, 4)
    small_disk(settings.home / "runs", "64k")
    done = _cli(settings, "train", "--config", "tiny", "--epochs", "1", "--no-reference", "--json")
    _assert_disk_full(done, settings.home)
    with sessions() as session:
        assert version_queries.model_versions(session, kind="detector") == []
