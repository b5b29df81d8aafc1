"""`labeler dashboard`: Streamlit on loopback, headless, with this CLI's settings."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from core.settings import Settings
from labeler.cli import dashboard as dashboard_cli
from labeler.context import AppContext


def cli() -> typer.Typer:
    """The command registered as labeler/cli/__init__.py registers it."""
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = AppContext(Settings())

    app.command()(dashboard_cli.dashboard)
    return app


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    seen: list[tuple[list[str], dict[str, str]]] = []

    def call(argv: list[str], *, env: dict[str, str], **_: Any) -> int:
        seen.append((argv, env))
        return 0

    monkeypatch.setattr(subprocess, "call", call)  # the command's only way to start a process
    return seen


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_dashboard_runs_streamlit_headless_on_loopback_with_the_settings(
    settings: Settings, calls: list[tuple[list[str], dict[str, str]]]
) -> None:
    result = CliRunner().invoke(cli(), ["dashboard", "--port", "8765"])
    assert result.exit_code == 0, result.output
    ((argv, env),) = calls
    assert argv[1:5] == ["-m", "streamlit", "run", str(dashboard_cli.app_path())]
    assert dashboard_cli.app_path().is_file()
    assert option(argv, "--server.headless") == "true"
    assert option(argv, "--server.address") == "127.0.0.1"
    assert option(argv, "--server.port") == "8765"
    assert option(argv, "--browser.gatherUsageStats") == "false"
    assert env["LABELER_HOME"] == str(settings.home)
    assert env["LABELER_DB_URL"] == settings.db_url
    assert "http://127.0.0.1:8765" in result.output and "warning" not in result.output


def test_dashboard_warns_when_listening_beyond_loopback(
    settings: Settings, calls: list[tuple[list[str], dict[str, str]]]
) -> None:
    result = CliRunner().invoke(cli(), ["dashboard", "--host", "0.0.0.0"])
    assert result.exit_code == 0
    assert option(calls[0][0], "--server.address") == "0.0.0.0"
    assert "no login" in result.output
