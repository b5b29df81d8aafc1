"""The CLI's one error handler: a corrupt database is exit code 5 from every command, one line,
valid JSON under --json; a bug keeps its traceback; usage errors stay JSON under --json."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from db import migrate
from db.engine import DatabaseProblem, database_problem, make_engine
from core.settings import Settings
from labeler.cli import app
from core.errors import ExitCode

runner = CliRunner()

# Every command that opens the database, with the arguments it needs to get that far.
COMMANDS = [
    ["status"],
    ["init"],
    ["sync"],
    ["retrain"],
    ["retrain", "--dry-run"],
    ["import", "busbra_mini", "--dataset", "busbra"],
    ["models", "list"],
    ["models", "verify"],
    ["models", "promote", "detector-x"],
    ["models", "rollback"],
    ["predict"],
    ["evaluate"],
    ["train"],
    ["similar", "1"],
    ["encoder", "index"],
    ["encoder", "train"],
    ["studio", "status"],
    ["studio", "push"],
    ["db", "current"],
]
JSON_LESS = {("init",), ("db", "current"), ("models", "promote"), ("models", "rollback")}


def _random_bytes(db: Path) -> None:
    db.write_bytes(random.Random(0).randbytes(4096))


def _garbled_pages(db: Path) -> None:
    """A real database whose pages after the header were overwritten."""
    _real_database(db)
    data = bytearray(db.read_bytes())
    data[4096:] = random.Random(1).randbytes(len(data) - 4096)
    db.write_bytes(bytes(data))


def _truncated(db: Path) -> None:
    _real_database(db)
    with db.open("r+b") as fh:
        fh.truncate(5 * 4096)


def _real_database(db: Path) -> None:
    engine = make_engine(f"sqlite:///{db}")
    migrate.upgrade(engine)
    engine.dispose()
    with sqlite3.connect(db) as conn:  # everything into the main file, no WAL left beside it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    for extra in db.parent.glob(f"{db.name}-*"):
        extra.unlink()


CORRUPTIONS = {"random": _random_bytes, "garbled": _garbled_pages, "truncated": _truncated}


@pytest.fixture(params=sorted(CORRUPTIONS))
def corrupt_db(request: pytest.FixtureRequest, settings: Settings, busbra_dir: Path) -> Path:
    settings.home.mkdir(parents=True)
    db = settings.home / "labeler.db"
    CORRUPTIONS[request.param](db)
    return db


def _wants_json(cmd: list[str]) -> bool:
    return not any(tuple(cmd[: len(k)]) == k for k in JSON_LESS)


def test_a_corrupt_database_is_one_line_and_exit_5_from_every_command(
    corrupt_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_STUDIO_URL", "http://127.0.0.1:9")  # nothing listens
    before = corrupt_db.read_bytes()
    for cmd in COMMANDS:
        args = cmd + (["--json"] if _wants_json(cmd) else [])
        out = runner.invoke(app, args)
        assert out.exit_code == ExitCode.DATABASE, (cmd, out.output, out.exception)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the database cannot be used"), cmd
        assert "labeler init" in lines[0]
        if _wants_json(cmd):
            assert json.loads(out.stdout) == {
                "error": lines[0].removeprefix("error: "),
                "exit_code": 5,
            }
    assert corrupt_db.read_bytes()[:4096] == before[:4096]  # nothing "repaired" it away


def test_the_console_entry_point_prints_one_line_not_a_traceback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.home.mkdir(parents=True)
    _random_bytes(settings.home / "labeler.db")
    done = subprocess.run(
        [sys.executable, "-m", "labeler.cli", "status", "--json"],
        capture_output=True,
        text=True,
        env=os.environ | {"LABELER_HOME": str(settings.home)},
        timeout=120,
    )
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "file is not a database" in done.stderr
    assert json.loads(done.stdout)["exit_code"] == 5


def test_database_problem_tells_corrupt_from_full_and_from_bugs(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    _random_bytes(db)
    engine = make_engine(f"sqlite:///{db}")
    with pytest.raises(Exception) as caught:
        engine.connect()
    assert database_problem(caught.value) == (DatabaseProblem.UNUSABLE, "file is not a database")
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13
    assert database_problem(RuntimeError("wrapped")) is None
    try:
        raise RuntimeError("while writing") from full
    except RuntimeError as wrapped:
        assert database_problem(wrapped) == (DatabaseProblem.FULL, "database or disk is full")
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5
    assert database_problem(locked) is None  # busy is not broken: the caller decides


def test_a_bug_keeps_its_traceback(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import labeler.context

    def broken(self: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(labeler.context.AppContext, "require_schema", broken)
    out = runner.invoke(app, ["status", "--json"])
    assert isinstance(out.exception, ZeroDivisionError)  # not turned into a tidy line
    assert out.stdout == ""


def test_usage_errors_stay_json_under_json(settings: Settings) -> None:
    out = runner.invoke(app, ["status", "--no-such-option", "--json"])
    assert out.exit_code == 2
    said = json.loads(out.stdout)
    assert said["exit_code"] == 2 and "--no-such-option" in said["error"]
    plain = runner.invoke(app, ["status", "--no-such-option"])
    assert plain.exit_code == 2 and plain.stdout == ""
