"""`labeler simulate`: a seed model and one round on the bundled sample, end to end, killed and
resumed.

The run is killed (SIGKILL to its process group) once round 0 (the seed labels and the seed
model) is recorded; the rerun resumes after round 0 instead of starting again. One round, not
two: the second cost about 15 CPU-s of the default test run, and what only it reached (a
fine-tune of a fine-tuned candidate, when round 1's passed its gate) takes the code path of
any fine-tune from a registered version, which tests/labeler/test_retrain.py runs. When a
stored run resumes and when it starts afresh is checked on `_open` alone (no training).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.settings import Settings
from db.queries import events as event_queries
from db.queries import simulations as simulation_queries
from db.queries import versions as version_queries
from labeler.cli import app
from labeler.context import AppContext
from labeler.jobs.simulate import STATE, SimulationConfig, SimulationState, _open

runner = CliRunner()
NAME = "busbra-coreset-tiny-n10-k5-corr-s0"


def _args(busbra_dir: Path) -> list[str]:
    return [
        "simulate",
        "--dataset",
        "busbra",
        "--data",
        str(busbra_dir),
        "--strategy",
        "coreset",
        "--rounds",
        "1",
        "--per-round",
        "5",
        "--seed-labels",
        "10",
        "--corrections",
        "--preset",
        "tiny",
        "--json",
    ]


def _kill_after_round_0(settings: Settings, args: list[str]) -> None:
    state = settings.home / "simulations" / NAME / STATE
    run = subprocess.Popen(
        [sys.executable, "-m", "labeler.cli", *args],
        env=os.environ | {"LABELER_HOME": str(settings.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and run.poll() is None:
            if (
                state.is_file()
                and SimulationState.model_validate_json(state.read_text()).round == 0
            ):
                break
            time.sleep(0.2)
        assert run.poll() is None, run.communicate()  # still in round 1: not finished
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(10)


def test_a_killed_simulation_resumes_and_writes_its_learning_curve(
    busbra_dir: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    args = _args(busbra_dir)
    _kill_after_round_0(settings, args)
    with sessions() as session:
        before = simulation_queries.simulation_points(session, simulation=NAME)
        before_versions = [p.metrics.version for p in before]
    assert [p.round for p in before] == [0]

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "resuming after round 0" in result.stderr
    (curve,) = json.loads(result.stdout)["curves"]
    assert curve["resumed_after_round"] == 0
    [retrained] = curve["retrained"]  # only round 1 ran
    assert retrained["round"] == 1
    points = curve["points"]
    assert [p["round"] for p in points] == [0, 1]
    assert curve["reviews_by_reader"] == {"reader-1": 5, "reader-2": 5, "reader-3": 5}
    assert [p["reviews"] for p in points] == [0, 15]  # three readers per image
    assert [p["labeled_images"] for p in points] == [10, 15]  # corrections join training
    assert points[0]["accept_rate"] is None
    assert all(0.0 <= p["accept_rate"] <= 1.0 for p in points[1:])
    versions = [p["metrics"]["version"] for p in points]
    assert versions[:1] == before_versions  # round 0 (the seed model) was not trained again
    passed = retrained["gate"]["passed"]
    assert versions[1] == (retrained["candidate"] if passed else versions[0])
    home = settings.home / "simulations" / NAME
    sim = AppContext(
        settings.model_copy(update={"home": home, "db_url": f"sqlite:///{home}/labeler.db"})
    )
    with sim.sessions() as session:
        assert version_queries.active_model_id(session, kind="detector") == versions[1]
        assert event_queries.count_events(session, action="retrain_gated") >= 1  # round 1
    sim.engine.dispose()
    with sessions() as session:
        stored = simulation_queries.simulation_points(session, simulation=curve["simulation"])
    assert [(s.round, s.reviews) for s in stored] == [(0, 0), (1, 15)]
    with open(curve["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["reviews"]) for r in rows] == [0, 15]
    assert rows[1]["version"] == versions[1]


def _config(busbra_dir: Path, errors: tuple[float, ...] = (0.05, 0.1, 0.15)) -> SimulationConfig:
    return SimulationConfig(
        dataset="busbra", data=busbra_dir, strategy="random", reader_errors=errors
    )


def _stored(settings: Settings, config: SimulationConfig, state: SimulationState) -> Path:
    home = settings.home / "simulations" / config.name
    home.mkdir(parents=True)
    (home / STATE).write_text(state.model_dump_json())
    (home / "round-1.marker").touch()
    return home


def test_an_unfinished_run_with_the_same_options_resumes(
    busbra_dir: Path, settings: Settings
) -> None:
    config = _config(busbra_dir)
    home = _stored(settings, config, SimulationState(config=config.resume_key(), round=1))
    said: list[str] = []
    more_rounds = dataclasses.replace(config, rounds=5)  # rounds may change on resume
    app, state = _open(settings, more_rounds, said.append)
    app.engine.dispose()
    assert state.round == 1 and (home / "round-1.marker").exists()
    assert said == [f"{config.name}: resuming after round 1"]


def test_a_finished_run_or_other_options_start_afresh(busbra_dir: Path, settings: Settings) -> None:
    config = _config(busbra_dir)
    for stored, asked in (
        (SimulationState(config=config.resume_key(), round=2, finished=True), config),
        (
            SimulationState(config=config.resume_key(), round=1),
            _config(busbra_dir, (0.2, 0.2, 0.2)),
        ),
    ):
        home = _stored(settings, asked, stored.model_copy(update={"config": stored.config}))
        app, state = _open(settings, asked, lambda _: None)
        app.engine.dispose()
        assert state.round == -1 and not state.finished
        assert not (home / "round-1.marker").exists()  # the old run's files are gone
        shutil.rmtree(home)


def test_an_unknown_strategy_is_refused(busbra_dir: Path, sessions: sessionmaker[Session]) -> None:
    args = ["simulate", "--dataset", "busbra", "--data", str(busbra_dir), "--strategy", "oracle"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "unknown strategy" in result.output


def test_an_unknown_detector_preset_is_refused(
    busbra_dir: Path, sessions: sessionmaker[Session]
) -> None:
    args = ["simulate", "--dataset", "busbra", "--data", str(busbra_dir), "--strategy", "random"]
    result = runner.invoke(app, [*args, "--preset", "r999"])
    assert result.exit_code == 2 and "no detector config 'r999'" in result.output
