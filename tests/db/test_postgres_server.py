"""The tests' own PostgreSQL server (tests/postgres.py): found where Debian puts it, or a failure
that says how to install it, never a skip."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from db.engine import make_engine
from tests import postgres


def test_missing_server_binaries_fail_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "DEBIAN", tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"scripts/setup.sh --tests"):
        postgres.server_binaries()
    for version in ("9", "15"):  # Debian's layout, the newest wins
        for name in ("initdb", "pg_ctl"):
            (tmp_path / version / "bin").mkdir(parents=True, exist_ok=True)
            (tmp_path / version / "bin" / name).touch()
    assert postgres.server_binaries() == tmp_path / "15" / "bin"


def test_the_postgresql_server_listens_on_loopback_only(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.scalar(text("SHOW listen_addresses")) == "127.0.0.1"
        assert conn.scalar(text("SHOW unix_socket_directories")) == ""
        assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1  # from the template
    engine.dispose()
