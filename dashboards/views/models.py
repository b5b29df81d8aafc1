"""Models: versions with lineage, training-set size, the active marker, and the learning curve."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import streamlit as st

from core.text import plural
from dashboards import charts, data
from db.reports.versions import (
    LEARNING_METRICS,
    LearningPoint,
    PromotionRow,
    SimulationCurvePoint,
    VersionRow,
)


def versions_records(versions: list[VersionRow]) -> list[dict[str, Any]]:
    return [
        {
            "version": v.id,
            "kind": v.kind,
            "active": v.active,
            "parent": v.parent_id or "",
            "training images": v.n_train_images,
            "created (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M"),
            "label space": " ".join(v.label_space),
            "val_map50": v.val.map50 if v.val else None,
            "val_screening_acc": v.val.screening_acc if v.val else None,
        }
        for v in versions
    ]


def lineage_dot(versions: list[VersionRow]) -> str:
    """Graphviz: one node per version (active ones filled), an edge from parent to child."""
    lines = ["digraph lineage {", "rankdir=LR;", 'node [shape=box, fontsize=10, style="rounded"];']
    for v in versions:
        size = f"\\n{plural(v.n_train_images, 'image')}" if v.n_train_images is not None else ""
        fill = ', style="rounded,filled", fillcolor="#9ecae1"' if v.active else ""
        lines.append(f'"{v.id}" [label="{v.id}\\n{v.kind}{size}"{fill}];')
    lines += [f'"{v.parent_id}" -> "{v.id}";' for v in versions if v.parent_id]
    return "\n".join([*lines, "}"])


def versions_section(versions: list[VersionRow]) -> None:
    st.subheader("Versions")
    active = [v for v in versions if v.active]
    st.caption(
        "Active: "
        + (", ".join(f"{v.kind} → {v.id}" for v in active) or "none")
        + f" · {plural(len(versions), 'version')}"
    )
    st.dataframe(versions_records(versions), hide_index=True)
    st.graphviz_chart(lineage_dot(versions))


def curve_records(points: list[LearningPoint], metrics: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "version": p.version_id,
            "series": p.series,
            "training images": p.n_train_images,
            "created": p.created_at.isoformat(),
            "metric": name,
            "value": p.metrics.get(name),
        }
        for p in points
        for name in metrics
        if p.metrics.get(name) is not None
    ]


def learning_section(points: list[LearningPoint]) -> None:
    st.subheader("Learning curve (test split)")
    if not points:
        st.info("No evaluations yet: run `labeler evaluate` after training.")
        return
    chosen = st.multiselect(
        "Metrics", list(LEARNING_METRICS), default=["ACC", "SEN", "SPE", "AUC"], key="lc_metrics"
    )
    by_size = all(p.n_train_images is not None for p in points)
    x = "training images" if by_size else "created"
    records = curve_records(points, chosen)
    if records:
        chart = charts.learning_lines(records, x=x, temporal=not by_size)
        st.altair_chart(chart, width="stretch")
    table: list[dict[str, Any]] = [
        {"version": p.version_id, "series": p.series, "training images": p.n_train_images}
        | p.metrics
        for p in points
    ]
    st.dataframe(table, hide_index=True)
    st.caption("One line style per series (model kind).")


SIMULATION_METRICS = ("map50", "lesion_map50", "auc", "accept_rate")


def simulation_value(point: SimulationCurvePoint, metric: str) -> float | None:
    """One of SIMULATION_METRICS: the round's accept rate, or its model's test metric."""
    if metric == "accept_rate":
        return point.accept_rate
    value: float | None = getattr(point.metrics, metric)
    return value


def simulation_records(points: list[SimulationCurvePoint]) -> list[dict[str, Any]]:
    """One flat row per point for the table."""
    return [
        {k: v for k, v in asdict(p).items() if k != "metrics"}
        | p.metrics.model_dump(exclude={"schema_version"})
        for p in points
    ]


def simulation_section(points: list[SimulationCurvePoint]) -> None:
    st.subheader("Simulation: active learning vs random")
    if not points:
        st.info(
            "No simulations yet: `labeler simulate --dataset busbra --data PATH --strategy "
            "random --strategy entropy`."
        )
        return
    metric = st.selectbox("Metric", SIMULATION_METRICS, key="sim_metric")
    records = [
        {
            "simulation": p.simulation,
            "strategy": p.strategy,
            "reviews": p.reviews,
            "value": simulation_value(p, metric),
        }
        for p in points
        if simulation_value(p, metric) is not None
    ]
    if records:
        st.altair_chart(charts.simulation_lines(records, metric=metric), width="stretch")
    st.dataframe(simulation_records(points), hide_index=True)


def promotions_section(rows: list[PromotionRow]) -> None:
    st.subheader("Promotions and rollbacks")
    if not rows:
        st.info("The active pointer has not moved yet.")
        return
    records = [asdict(r) | {"previous_version_id": r.previous_version_id or ""} for r in rows]
    st.dataframe(records, hide_index=True)


def render() -> None:
    url = data.settings().db_url
    st.title("Models")
    versions = data.model_lineage(url)
    if not versions:
        st.info("No model versions yet: run `labeler train --config small`.")
        return
    versions_section(versions)
    learning_section(data.learning_curve(url))
    simulation_section(data.simulation_curves(url))
    promotions_section(data.promotion_log(url))


render()
