"""`labeler demo --no-wait`: the three services come up on the bundled sample, and a second run
reuses everything. A model is registered first so the test does not spend minutes training."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bench.support.factories import migrated, register_random_detector
from bench.support.harness import free_port
from core.settings import Settings
from labeler.cli import app

runner = CliRunner()


def _down(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return True
    return False


def test_demo_brings_up_backend_studio_and_dashboard_then_stops_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "LABELER_HOME": str(tmp_path / "home"),
        "LABELER_ID_SALT": "demo-test",
        "LABELER_DB_URL": "",
        "LABELER_OCR": "off",  # as in every test (tests/conftest.py isolated_env)
        "LABELER_IMPORT_WORKERS": "1",
        "LABELER_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
        "LABELER_BACKEND_URL": f"http://127.0.0.1:{free_port()}",
        "LABELER_DASHBOARD_PORT": str(free_port()),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    version = register_random_detector(settings, migrated(settings))

    first = runner.invoke(app, ["demo", "--no-wait", "--json"])
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["model_version"] == version and out["trained"] is False
    assert set(out["urls"]) == {"ML backend", "Label Studio", "dashboard"}
    assert out["tasks_created"] > 0 and len(out["logins"]["readers"]) == 3
    for url in out["urls"].values():
        assert _down(url), f"{url} still answers after the demo stopped"

    second = runner.invoke(app, ["demo", "--no-wait", "--json"])
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["tasks_created"] == 0 and again["imports"][0]["added"] == 0
