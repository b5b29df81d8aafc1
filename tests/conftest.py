"""Shared fixtures: an isolated LABELER_HOME and data root per test, real SQLite files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import migrate
from db.engine import make_engine, make_session_factory
from db.settings import Settings

BUNDLED = Path(__file__).parent / "data"


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def settings(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for one test; also exported as LABELER_* so CLI invocations see the same."""
    env = {
        "LABELER_HOME": str(tmp_path / "home"),
        "LABELER_DATA_ROOT": str(data_root),
        "LABELER_ID_SALT": "test-salt-not-secret",
        "LABELER_IMPORT_WORKERS": "2",
        "LABELER_DB_URL": "",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def copy_sample(name: str, data_root: Path) -> Path:
    """Copy a bundled sample under the test's data root (symlinks would point outside it)."""
    dest = data_root / name
    shutil.copytree(BUNDLED / name, dest)
    return dest


@pytest.fixture
def busbra_dir(data_root: Path) -> Path:
    return copy_sample("busbra_mini", data_root)


@pytest.fixture
def breast_dir(data_root: Path) -> Path:
    return copy_sample("breast_lesions_usg_mini", data_root)
