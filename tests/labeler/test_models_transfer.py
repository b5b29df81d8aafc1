"""`labeler models export VERSION FILE` in one home, `labeler models import FILE` in another."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import register_opaque_detector
from core.errors import ExitCode
from core.settings import Settings
from labeler.cli import app
from ml_backend.detector.frcnn import WEIGHTS
from ml_backend.registry import ModelRegistry

runner = CliRunner()


@pytest.fixture
def version(settings: Settings, sessions: sessionmaker[Session]) -> str:
    return register_opaque_detector(settings, sessions)


def _other_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point every later command at a second, fresh home (its own SQLite file)."""
    home = tmp_path / "home2"
    monkeypatch.setenv("LABELER_HOME", str(home))
    return home


def test_export_then_import_in_another_home(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "m.tar.gz"
    out = runner.invoke(app, ["models", "export", version, str(file), "--json"])
    assert out.exit_code == 0, out.output
    exported = json.loads(out.stdout)
    assert (exported["id"], exported["kind"], exported["file"]) == (version, "detector", str(file))
    assert len(exported["sha256"]) == 64 and exported["files"] >= 2

    home = _other_home(monkeypatch, tmp_path)
    plain = runner.invoke(app, ["models", "import", str(file)])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.splitlines() == [
        f"imported {version} (detector, {exported['files']} files); "
        f"not active: `labeler models promote {version}` serves it"
    ]
    assert (home / "models" / version / WEIGHTS).is_file()
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)["versions"]
    assert [(v["id"], v["active"], v["damaged"]) for v in listed] == [(version, False, False)]

    again = runner.invoke(app, ["models", "import", str(file), "--json"])
    assert again.exit_code == 0
    typed = json.loads(again.stdout)
    assert typed == {
        "id": version,
        "kind": "detector",
        "status": "already_present",
        "files": exported["files"],
        "bytes": exported["bytes"],
        "parent": None,
        "parent_linked": False,
        "active": False,
        "package_version": typed["package_version"],
    }
    assert typed["package_version"]
    assert runner.invoke(app, ["models", "promote", version]).exit_code == 0
    said = runner.invoke(app, ["models", "import", str(file)]).stdout.strip()
    assert said == f"{version} is already present; nothing changed"


def test_export_refuses_to_overwrite_without_force(version: str, tmp_path: Path) -> None:
    file = tmp_path / "m.tar.gz"
    file.write_bytes(b"keep me")
    out = runner.invoke(app, ["models", "export", version, str(file)])
    assert out.exit_code == ExitCode.BAD_INPUT
    assert len(out.stderr.strip().splitlines()) == 1 and "--force" in out.stderr
    assert file.read_bytes() == b"keep me"
    forced = runner.invoke(app, ["models", "export", version, str(file), "--force"])
    assert forced.exit_code == 0 and forced.stdout.startswith(f"exported {version} to {file}")
    assert file.read_bytes()[:2] == b"\x1f\x8b"


def test_a_damaged_version_is_not_exported(
    version: str, settings: Settings, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    weights = ModelRegistry.for_settings(settings, sessions).path_of(version) / WEIGHTS
    weights.chmod(0o644)
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    os.utime(weights, ns=(1, 1))
    out = runner.invoke(app, ["models", "export", version, str(tmp_path / "m.tar.gz"), "--json"])
    assert out.exit_code == ExitCode.MODEL_DAMAGED
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and f"model version {version} is damaged" in line
    assert json.loads(out.stdout)["exit_code"] == 6
    assert not (tmp_path / "m.tar.gz").exists()


def test_a_tampered_archive_is_one_line_and_exit_2(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "m.tar.gz"
    assert runner.invoke(app, ["models", "export", version, str(file)]).exit_code == 0
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    _other_home(monkeypatch, tmp_path)
    out = runner.invoke(app, ["models", "import", str(file)])
    assert out.exit_code == ExitCode.BAD_INPUT, out.output
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and "model archive refused" in line
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)["versions"]
    assert listed == []
