"""A version whose files were deleted or changed after registration: `labeler models verify`
finds it, `models list` marks it, and every command that loads it refuses with exit code 6."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import import_sample, register_encoder, register_random_detector
from core.errors import ExitCode
from core.settings import Settings
from labeler.cli import app
from ml_backend.detector.frcnn import WEIGHTS
from ml_backend.registry import ModelRegistry

runner = CliRunner()


def _change(path: Path) -> None:
    """Flip one byte of a sealed (read-only) file, as a disk fault or a careless hand would."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # another mtime: the integrity cache must not trust it


@pytest.fixture
def models(settings: Settings, sessions: sessionmaker[Session]) -> tuple[str, str, Path]:
    """(intact detector, damaged active detector, home); both registered with checksums."""
    intact = register_random_detector(settings, sessions)
    damaged = register_random_detector(settings, sessions)  # promoted: it is the active one
    registry = ModelRegistry.for_settings(settings, sessions)
    _change(registry.path_of(damaged) / WEIGHTS)
    return intact, damaged, settings.home


def test_verify_lists_only_the_damaged_version_and_exits_6(
    models: tuple[str, str, Path],
) -> None:
    intact, damaged, _ = models
    out = runner.invoke(app, ["models", "verify"])
    assert out.exit_code == ExitCode.MODEL_DAMAGED, out.output
    assert out.stdout.splitlines() == [f"damaged {damaged}: {WEIGHTS} has changed (sha256 differs)"]
    as_json = runner.invoke(app, ["models", "verify", "--json"])
    assert as_json.exit_code == 6
    assert json.loads(as_json.stdout) == {
        "checked": 2,
        "damaged": [{"id": damaged, "problems": [f"{WEIGHTS} has changed (sha256 differs)"]}],
    }
    one = runner.invoke(app, ["models", "verify", intact, "--json"])
    assert one.exit_code == 0 and json.loads(one.stdout) == {"checked": 1, "damaged": []}
    unknown = runner.invoke(app, ["models", "verify", "detector-nope"])
    assert unknown.exit_code == 2 and "no model version" in unknown.stderr


def test_a_deleted_file_is_found_too(models: tuple[str, str, Path]) -> None:
    intact, _, home = models
    weights = next((home / "models").glob(f"{intact}/{WEIGHTS}"))
    weights.parent.chmod(0o755)
    weights.unlink()
    out = runner.invoke(app, ["models", "verify", intact])
    assert out.exit_code == 6 and out.stdout.strip() == f"damaged {intact}: {WEIGHTS} is missing"


def test_list_marks_damaged_and_ok(models: tuple[str, str, Path]) -> None:
    intact, damaged, _ = models
    out = runner.invoke(app, ["models", "list"])
    assert out.exit_code == 0
    rows = {v: next(line for line in out.stdout.splitlines() if v in line) for v in models[:2]}
    assert rows[damaged].startswith("*") and rows[damaged].endswith("  damaged")
    assert rows[intact].endswith("  ok")
    versions = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)["versions"]
    listed = {v["id"]: v for v in versions}
    assert listed[damaged]["damaged"] is True and listed[intact]["damaged"] is False


@pytest.mark.parametrize(
    "args",
    [
        ["predict"],
        ["evaluate"],
        ["train", "--epochs", "1"],  # --from-version is added below
        ["retrain", "--force"],
    ],
    ids=["predict", "evaluate", "train-from-version", "retrain"],
)
def test_loading_a_damaged_version_is_one_line_and_exit_6(
    models: tuple[str, str, Path], args: list[str]
) -> None:
    """Refused before any work: no images are needed to be told the weights are wrong."""
    _, damaged, _ = models
    if args[0] == "train":
        args = [*args, "--from-version", damaged]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == ExitCode.MODEL_DAMAGED, (out.output, out.exception)
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and f"model version {damaged} is damaged" in line
    assert json.loads(out.stdout)["exit_code"] == 6


def test_similar_refuses_a_damaged_encoder(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path
) -> None:
    import_sample(settings, sessions, busbra_dir, "busbra")
    encoder = register_encoder(settings, sessions)
    assert runner.invoke(app, ["encoder", "index"]).exit_code == 0  # built while intact
    registry = ModelRegistry.for_settings(settings, sessions)
    _change(next(p for p in registry.path_of(encoder).iterdir() if p.suffix == ".pt"))
    for args in (["encoder", "index"], ["similar", "1"]):
        out = runner.invoke(app, [*args, "--json"])
        assert out.exit_code == 6, (args, out.output, out.exception)
        assert f"model version {encoder} is damaged" in out.stderr
