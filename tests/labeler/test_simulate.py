"""`labeler simulate`: two rounds on the bundled sample, end to end (about a minute on CPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from db import queries
from labeler.cli import app

runner = CliRunner()


def test_two_rounds_write_a_learning_curve_to_the_db_and_a_csv(
    busbra_dir: Path, sessions: sessionmaker[Session]
) -> None:
    args = [
        "simulate",
        "--dataset",
        "busbra",
        "--data",
        str(busbra_dir),
        "--strategy",
        "coreset",
        "--rounds",
        "2",
        "--per-round",
        "5",
        "--seed-labels",
        "10",
        "--corrections",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (curve,) = json.loads(result.stdout)["curves"]
    points = curve["points"]
    assert [p["round"] for p in points] == [0, 1, 2]
    assert [p["reviews"] for p in points] == [0, 15, 30]  # three readers per image
    assert [p["labeled_images"] for p in points] == [10, 15, 20]  # corrections join training
    assert points[0]["accept_rate"] is None
    assert all(0.0 <= p["accept_rate"] <= 1.0 for p in points[1:])
    versions = [p["metrics"]["version"] for p in points]
    assert len(set(versions)) == 3  # retrained every round
    with sessions() as session:
        stored = queries.simulation_points(session, simulation=curve["simulation"])
    assert [(s.round, s.reviews) for s in stored] == [(0, 0), (1, 15), (2, 30)]
    with open(curve["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["reviews"]) for r in rows] == [0, 15, 30]
    assert rows[2]["version"] == versions[2]

    # a rerun of the same simulation starts from scratch and replaces the stored curve
    rerun = runner.invoke(app, [*args, "--rounds", "1"])  # the last --rounds wins
    assert rerun.exit_code == 0, rerun.output
    (again,) = json.loads(rerun.stdout)["curves"]
    assert again["simulation"] == curve["simulation"]
    with sessions() as session:
        stored = queries.simulation_points(session, simulation=curve["simulation"])
    assert [(s.round, s.labeled_images) for s in stored] == [(0, 10), (1, 15)]


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
