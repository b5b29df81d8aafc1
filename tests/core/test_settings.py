from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_env_prefix_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("LABELER_HOME", "LABELER_DB_URL", "LABELER_DATA_ROOT"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(_env_file=None)
    assert s.home == tmp_path / "labeler-data"
    assert s.db_url == f"sqlite:///{tmp_path / 'labeler-data' / 'labeler.db'}"
    assert s.data_root == tmp_path
    monkeypatch.setenv("LABELER_HOME", str(tmp_path / "elsewhere"))
    assert Settings(_env_file=None).home == tmp_path / "elsewhere"


def test_dotenv_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABELER_HOME", raising=False)
    monkeypatch.delenv("LABELER_DB_URL", raising=False)
    (tmp_path / ".env").write_text("LABELER_HOME=from-dotenv\nLABELER_DATA_ROOT=/srv/us\n")
    monkeypatch.setenv("LABELER_DATA_ROOT", str(tmp_path / "from-env"))
    s = Settings()
    assert s.home == tmp_path / "from-dotenv"
    assert s.data_root == tmp_path / "from-env"


def test_any_sqlalchemy_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://labeler@db.internal/labeler"
    monkeypatch.setenv("LABELER_DB_URL", url)
    assert Settings(_env_file=None).db_url == url


def test_test_and_val_fold_must_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELER_TEST_FOLD", "2")
    monkeypatch.setenv("LABELER_VAL_FOLD", "2")
    with pytest.raises(ValidationError, match="must differ"):
        Settings(_env_file=None)


def test_generated_salt_is_private_and_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABELER_ID_SALT", raising=False)
    monkeypatch.setenv("LABELER_HOME", str(tmp_path / "home"))
    s = Settings(_env_file=None)
    first = s.salt()
    assert len(first) == 64 and first == s.salt()
    mode = stat.S_IMODE((tmp_path / "home" / ".id_salt").stat().st_mode)
    assert mode == 0o600
