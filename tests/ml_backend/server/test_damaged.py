"""Item 11 of issue 12 (serving): a damaged active detector is not advertised, a miss is a 503
with one line, cached pre-labels keep working; `labeler serve` says so at start, and refuses to
start (exit 2, one line) when auth is on without its secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from labeler.cli import app
from ml_backend.registry import ModelRegistry
from tests.ml_backend.server.support import World, labels, task


def _weights(world: World) -> Path:
    folder = ModelRegistry.for_settings(world.settings, world.sessions).path_of(world.version)
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_damaged_version_is_a_503_on_setup_and_misses_but_hits_work(
    backend: World, damage: str
) -> None:
    client = backend.client()
    assert client.post("/setup", json={}).json() == {"model_version": backend.version}
    weights = _weights(backend)
    weights.chmod(0o644)
    if damage == "deleted":
        weights.unlink()
    else:
        with weights.open("r+b") as fh:
            fh.seek(100)
            fh.write(b"\xff" * 16)
    setup = client.post("/setup", json={})
    assert setup.status_code == 503 and "damaged" in setup.json()["detail"]
    miss = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[2]))]})
    assert miss.status_code == 503, miss.text
    assert "damaged" in miss.json()["detail"] and "\n" not in miss.json()["detail"]
    assert str(backend.settings.home) not in miss.text
    hit = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[0]))]})
    assert labels(hit) == [["BI-RADS 4A"]]


def test_serve_warns_about_a_damaged_version_and_starts(
    backend: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.append(app))
    _weights(backend).unlink()
    result = CliRunner().invoke(app, ["serve", "--port", "9"])
    assert result.exit_code == 0, result.output
    assert len(started) == 1
    warning = [line for line in result.output.splitlines() if "damaged" in line]
    assert len(warning) == 1 and "cached pre-labels" in warning[0]


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_serve_refuses_auth_without_a_secret(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    started: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.append(app))
    monkeypatch.setenv("LABELER_BACKEND_AUTH", scheme)
    monkeypatch.delenv("LABELER_BACKEND_PASSWORD", raising=False)
    monkeypatch.delenv("LABELER_BACKEND_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and started == []
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "LABELER_BACKEND_" in result.output and "Traceback" not in result.output
