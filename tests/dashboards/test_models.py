"""Models page: versions, lineage, active marker, training-set size, learning curve."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from core.results import DetectorVersionMetrics, SimulationMetrics
from db.models import ActiveModel, Evaluation, ModelPromotion, ModelVersion, TrainingRun
from tests.dashboards.helpers import chart_encoding, chart_marked, encodings, table
from tests.dashboards.seed import Plan


def test_versions_show_lineage_active_marker_and_training_size(
    seeded: Plan, sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> None:
    with sessions() as s:
        versions = list(s.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))
        active = set(s.scalars(select(ActiveModel.model_version_id)))
        sizes = dict(
            s.execute(select(TrainingRun.model_version_id, TrainingRun.n_train_images)).all()
        )
        promotions = len(list(s.scalars(select(ModelPromotion))))
    at = open_page("models")
    rows = table(at, with_column="label space")
    assert [r["version"] for r in rows] == [v.id for v in versions]
    assert {r["version"] for r in rows if r["active"]} == active
    for row, version in zip(rows, versions, strict=True):
        assert row["parent"] == (version.parent_id or "")
        assert isinstance(version.metrics, DetectorVersionMetrics) and version.metrics.val
        assert row["val_map50"] == pytest.approx(version.metrics.val.map50)
        shown = row["training images"]
        assert (None if math.isnan(shown) else shown) == sizes.get(version.id)
    dot = at.get("graphviz_chart")[0].proto.spec
    edges = {f'"{v.parent_id}" -> "{v.id}"' for v in versions if v.parent_id}
    assert edges and all(edge in dot for edge in edges)
    assert len(table(at, with_column="previous_version_id")) == promotions


def test_learning_curve_has_each_evaluation_in_version_order(
    seeded: Plan, sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> None:
    with sessions() as s:
        stored = s.execute(
            select(ModelVersion.id, Evaluation.metrics)
            .join(Evaluation, Evaluation.model_version_id == ModelVersion.id)
            .order_by(ModelVersion.created_at)
        ).all()
    at = open_page("models")
    rows = table(at, with_column="lesion_map50")
    assert [r["version"] for r in rows] == [v for v, _ in stored]
    for row, (_, metrics) in zip(rows, stored, strict=True):
        rates = metrics.screening.rates
        for name, rate in (("ACC", rates.acc), ("SEN", rates.sen), ("SPE", rates.spe)):
            assert rate is not None and row[name] == pytest.approx(rate.value)
        assert row["AUC"] == pytest.approx(metrics.screening.auc)
    assert len({row["ACC"] for row in rows}) > 1  # the seed gives v1 a different accuracy
    points = chart_marked(at, "line")
    chosen = at.multiselect(key="lc_metrics").value
    assert len(points) == len(stored) * len(chosen)
    assert sorted({p["metric"] for p in points}) == sorted(chosen)


def test_simulation_curves_show_every_stored_point_by_strategy(
    seeded: Plan, sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> None:
    from db.queries import simulations as simulation_queries
    from tests.dashboards.helpers import chart_titled

    curves = {"random": [0.10, 0.15, 0.18], "entropy": [0.10, 0.20, 0.27]}
    with sessions.begin() as s:
        for strategy, values in curves.items():
            for rnd, value in enumerate(values):
                simulation_queries.save_simulation_point(
                    s,
                    point=simulation_queries.NewSimulationPoint(
                        f"busbra-{strategy}",
                        strategy,
                        rnd,
                        30 * rnd,
                        10 + 10 * rnd,
                        None if rnd == 0 else 0.5,
                        SimulationMetrics(
                            version=f"v{rnd}",
                            map50=value,
                            lesion_map50=None,
                            auc=0.6 + value,
                            acc=None,
                            sen=None,
                            spe=None,
                        ),
                    ),
                )
    at = open_page("models")
    rows = table(at, with_column="accept_rate")
    assert [(r["strategy"], r["reviews"], r["map50"]) for r in rows] == [
        (strategy, 30 * rnd, pytest.approx(value))
        for strategy in sorted(curves)
        for rnd, value in enumerate(curves[strategy])
    ]
    spec, _ = chart_encoding(at, "reviews")
    (axis,) = [c["axis"] for c in encodings(spec) if c.get("field") == "reviews"]
    assert (axis["format"], axis["tickMinStep"]) == ("d", 1)  # reviews are whole numbers
    drawn = chart_titled(at, "Simulation: map50 vs expert reviews")
    assert sorted((d["strategy"], d["reviews"], round(d["value"], 2)) for d in drawn) == sorted(
        (strategy, 30 * rnd, value)
        for strategy, vals in curves.items()
        for rnd, value in enumerate(vals)
    )


def test_learning_curve_by_training_size_ticks_whole_images(
    seeded: Plan, sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> None:
    with sessions.begin() as s:  # every version's size known: the curve is drawn by size
        s.add(
            TrainingRun(
                kind="detector_no4",
                status="succeeded",
                config={},
                model_version_id="v3",
                n_train_images=7,
            )
        )
    at = open_page("models")
    spec, rows = chart_encoding(at, "training images")
    assert sorted({r["training images"] for r in rows}) == sorted([*seeded.train_sizes.values(), 7])
    (axis,) = [c["axis"] for c in encodings(spec) if c.get("field") == "training images"]
    assert (axis["format"], axis["tickMinStep"]) == ("d", 1)
