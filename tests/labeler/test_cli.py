"""The `labeler` command line, invoked as a user would (typer's runner, real db, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from core.settings import Settings
from labeler.cli import app

runner = CliRunner()


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        paths += [[name, sub] for sub in getattr(cmd, "commands", {})]
    assert len(paths) >= 8  # init, import, status, demo, db + its subcommands
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_data_returning_commands_offer_json() -> None:
    for path in (["import"], ["status"], ["init"], ["db", "current"], ["demo"]):
        assert "--json" in runner.invoke(app, [*path, "--help"]).output


def test_import_json_summary_shape(busbra_dir: Path, settings: Settings) -> None:
    result = runner.invoke(app, ["import", str(busbra_dir), "--dataset", "busbra", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 62 and data["errors"] == []
    assert sum(data["birads"].values()) == 62
    assert set(data["pathology"]) == {"benign", "malignant"}
    again = json.loads(
        runner.invoke(app, ["import", str(busbra_dir), "--dataset", "busbra", "--json"]).stdout
    )
    assert again["added"] == 0 and again["already_present"] == 62


def test_exit_codes_say_what_happened(tmp_path: Path, data_root: Path, settings: Settings) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    refused = runner.invoke(app, ["import", str(outside)])
    assert refused.exit_code == 2 and "outside LABELER_DATA_ROOT" in refused.output

    wrong_layout = runner.invoke(app, ["import", str(data_root), "--dataset", "busbra"])
    assert (
        wrong_layout.exit_code == 2 and "annotations_derived.csv is missing" in wrong_layout.output
    )

    (data_root / "bad.png").write_text("nope")
    partial = runner.invoke(app, ["import", str(data_root), "--json"])
    assert partial.exit_code == 1
    assert json.loads(partial.stdout)["errors"][0]["where"] == "bad.png"


def test_status_before_init_says_what_to_run(settings: Settings) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2 and "labeler init" in result.output
    assert runner.invoke(app, ["init", "--json"]).exit_code == 0
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["images"] == 0


def test_db_current_and_downgrade(settings: Settings) -> None:
    runner.invoke(app, ["init"])
    current = json.loads(runner.invoke(app, ["db", "current", "--json"]).stdout)
    assert current["current"] == current["head"] is not None
    assert "base" in runner.invoke(app, ["db", "downgrade", "base"]).output
    assert json.loads(runner.invoke(app, ["db", "current", "--json"]).stdout)["current"] is None


def test_demo_imports_the_bundled_sample_and_is_rerunnable(
    data_root: Path, settings: Settings
) -> None:
    """The shipped sample lies outside this data root: the demo imports a copy made under it."""
    first = json.loads(runner.invoke(app, ["demo", "--no-services", "--json"]).stdout)
    assert [i["added"] for i in first["imports"]] == [62, 26]
    copies = sorted(p.name for p in (data_root / "labeler-sample").iterdir())
    assert copies == ["breast_lesions_usg_mini", "busbra_mini"]
    second = json.loads(runner.invoke(app, ["demo", "--no-services", "--json"]).stdout)
    assert [i["added"] for i in second["imports"]] == [0, 0]
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["images"] == 88
    assert status["datasets"] == {"busbra": 62, "breast-lesions-usg": 26}


_PROBE = """
import atexit, sys
atexit.register(lambda: print("torch" in sys.modules, sys.float_info.min / 2 == 0.0))
from labeler.cli import run
sys.argv = ["labeler", *sys.argv[1:]]
run()
"""


@pytest.mark.parametrize(
    ("args", "code", "torch_and_flushed"),
    [
        (["init"], 0, "False False"),
        # Label Studio unreachable: a sync that has nothing to convert or match
        (["sync", "--json"], 3, "False False"),
        (["models", "list", "--json"], 0, "True True"),
    ],
)
def test_only_commands_that_may_run_a_model_import_torch_and_flush_denormals(
    settings: Settings, args: list[str], code: int, torch_and_flushed: str
) -> None:
    """`init` and an idle `sync` start without torch; a model command flushes denormals first."""
    env = os.environ | {"LABELER_STUDIO_URL": "http://127.0.0.1:9"}  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == code, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == torch_and_flushed
