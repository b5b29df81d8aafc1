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

from bench.support.harness import free_port
from core.errors import ExitCode, LabelerError
from core.settings import Settings
from db import migrate
from db.engine import DatabaseProblem, database_problem, make_engine
from labeler.cli import app

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


# One hierarchy: every expected failure is a LabelerError of the kind its exit code says.
def _kinds() -> list[tuple[type[BaseException], ExitCode]]:
    from core.birads import UnknownBiradsError
    from db.queries.images import LesionOfAnotherPatientError, SourceIdTakenError
    from db.queries.phi import UnknownImageIdError
    from labeler.context import DatabaseNotReadyError
    from labeler.importing.datasets import DatasetLayoutError
    from labeler.importing.paths import MissingPathError, OutsideDataRootError
    from labeler.importing.rasters import TooManyPixelsError, UnreadableImageError
    from labeler.jobs.encoder import NoLesionsError
    from labeler.jobs.pretrain import NoClipsError
    from labeler.jobs.similar import NoActiveEncoderError, NoIndexError, SimilarError
    from labeler.jobs.train import NoTrainingDataError
    from labeler.jobs.versions import NoActiveDetectorError
    from labeler.lock import AlreadyRunningError
    from labeler.sample import SampleMissingError
    from labeler.services import DashboardsMissingError
    from labeler.studio.client import StudioRequestError, StudioUnavailableError
    from labeler.studio.server import ServiceStartError, StudioNotInstalledError
    from ml_backend.detector.config import UnknownConfigError
    from ml_backend.encoder.frames import VideoDecoderMissingError
    from ml_backend.encoder.index import IndexFormatError
    from ml_backend.registry import (
        DamagedVersionError,
        NothingToRollBackError,
        RegistryError,
        UnknownVersionError,
    )
    from ml_backend.server.errors import BackendConfigError
    from ml_backend.training.hooks import NonFiniteLossError

    bad, studio = ExitCode.BAD_INPUT, ExitCode.STUDIO
    return [
        (NoTrainingDataError, ExitCode.PARTIAL),
        (NonFiniteLossError, ExitCode.PARTIAL),
        (NoLesionsError, bad),
        (NoClipsError, bad),
        (SimilarError, bad),
        (NoActiveEncoderError, bad),
        (NoIndexError, bad),
        (NoActiveDetectorError, bad),
        (OutsideDataRootError, bad),
        (MissingPathError, bad),
        (UnreadableImageError, bad),
        (TooManyPixelsError, bad),
        (DatasetLayoutError, bad),
        (DatabaseNotReadyError, bad),
        (UnknownBiradsError, bad),
        (UnknownImageIdError, bad),
        (SourceIdTakenError, bad),
        (LesionOfAnotherPatientError, bad),
        (RegistryError, bad),
        (UnknownVersionError, bad),
        (NothingToRollBackError, bad),
        (VideoDecoderMissingError, bad),
        (IndexFormatError, bad),
        (UnknownConfigError, bad),
        (BackendConfigError, bad),
        (SampleMissingError, bad),
        (DashboardsMissingError, bad),
        (StudioUnavailableError, studio),
        (StudioRequestError, studio),
        (StudioNotInstalledError, studio),
        (ServiceStartError, studio),
        (AlreadyRunningError, ExitCode.BUSY),
        (DamagedVersionError, ExitCode.MODEL_DAMAGED),
    ]


def test_every_expected_failure_is_a_labeler_error_with_its_exit_code() -> None:
    for cls, code in _kinds():
        assert issubclass(cls, LabelerError), cls
        assert cls.exit_code == code, (cls, cls.exit_code, code)
        assert not issubclass(cls, KeyError), cls  # a KeyError would look like a dict bug


def test_a_lookup_error_from_a_job_is_a_bug_with_its_traceback(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyError from a job (a typo'd dict key) is not an expected failure: no tidy line."""
    import labeler.jobs.predict

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("map50")

    monkeypatch.setattr(labeler.jobs.predict, "predict_pool", broken)
    out = runner.invoke(app, ["predict", "--json"])
    assert isinstance(out.exception, KeyError) and out.exit_code == 1
    assert "error:" not in out.stderr and out.stdout == ""
    assert out.exc_info is not None and out.exc_info[2] is not None  # the traceback to print


def test_a_lookup_error_in_a_studio_command_is_not_label_studio_down(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import labeler.studio.client
    import labeler.studio.project

    def no_such_key(*args: object) -> None:
        raise LookupError("a bug, not Label Studio")

    assert runner.invoke(app, ["init"]).exit_code == 0
    monkeypatch.setattr(labeler.studio.client, "connect", lambda settings: object())
    monkeypatch.setattr(labeler.studio.project, "find_project", no_such_key)
    out = runner.invoke(app, ["studio", "status"])
    assert isinstance(out.exception, LookupError) and out.exit_code == 1
    assert out.exit_code != ExitCode.STUDIO and "error:" not in out.stderr


def test_label_studio_down_is_one_line_and_exit_3(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_STUDIO_URL", "http://127.0.0.1:9")  # nothing listens
    assert runner.invoke(app, ["init"]).exit_code == 0
    for args in (["studio", "status", "--json"], ["sync", "--json"]):
        out = runner.invoke(app, args)
        assert out.exit_code == ExitCode.STUDIO, (args, out.output, out.exception)
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith("error: Label Studio at http://127.0.0.1:9 is not reachable")
        assert json.loads(out.stdout)["exit_code"] == 3


def test_import_workers_do_not_change_the_shared_settings(
    settings: Settings, busbra_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labeler.cli.common import app_context as real_context
    from labeler.context import AppContext
    from labeler.importing.pipeline import run_import as real_import

    contexts: list[AppContext] = []
    seen: list[Settings] = []

    def remember_context(ctx: object) -> AppContext:
        contexts.append(real_context(ctx))  # type: ignore[arg-type]
        return contexts[-1]

    def remember_import(*args: object, settings: Settings, **kwargs: object) -> object:
        seen.append(settings)
        return real_import(*args, settings=settings, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("labeler.cli.data.app_context", remember_context)
    monkeypatch.setattr("labeler.cli.data.run_import", remember_import)
    out = runner.invoke(app, ["import", str(busbra_dir), "--dataset", "busbra", "--workers", "2"])
    assert out.exit_code == 0, out.output
    assert seen[0].import_workers == 2  # the import ran with --workers
    assert contexts[0].settings.import_workers == 1  # the shared settings kept LABELER_*'s value
    assert seen[0] is not contexts[0].settings


def test_a_database_server_that_does_not_answer_is_one_line_and_exit_5(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL down (nothing listens on the port): a line that says so, not a traceback and
    not the corrupt-file advice."""
    monkeypatch.setenv("LABELER_DB_URL", f"postgresql+psycopg://labeler@127.0.0.1:{free_port()}/x")
    for cmd in (["status"], ["models", "list"], ["init"]):
        out = runner.invoke(app, [*cmd, "--json"] if cmd != ["init"] else cmd)
        assert out.exit_code == ExitCode.DATABASE, (cmd, out.output, out.exception)
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith("error: the database server cannot be reached (") and (
            "LABELER_DB_URL" in line and "labeler init" not in line
        ), line
