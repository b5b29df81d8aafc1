"""Altair charts the pages share: confusion-matrix heatmaps, time series, curves.

Charts take plain records (a list of dicts), so pages need no DataFrame library; Streamlit ships
them to the browser as the chart's dataset, where the tests read them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt

from core.results import ConfusionMatrix

Records = list[dict[str, Any]]


def count_axis() -> alt.Axis:
    """An axis of whole numbers (images, reviews, labels): ticks 0, 1, 2, never 0.2 or 0.5."""
    return alt.Axis(format="d", tickMinStep=1)


def matrix_records(matrix: ConfusionMatrix, *, normalised: bool) -> Records:
    """One record (truth, predicted, value) per cell."""
    values = matrix.row_normalised if normalised else matrix.counts
    return [
        {"truth": truth, "predicted": pred, "value": values[i][j]}
        for i, truth in enumerate(matrix.labels)
        for j, pred in enumerate(matrix.labels)
    ]


def confusion_heatmap(matrix: ConfusionMatrix, *, normalised: bool, title: str) -> alt.LayerChart:
    """Rows truth, columns prediction, as in the paper; each cell carries its number."""
    records = matrix_records(matrix, normalised=normalised)
    order = list(matrix.labels)
    fmt = ".0%" if normalised else "d"
    base = alt.Chart(alt.InlineData(values=records), title=title).encode(
        x=alt.X("predicted:N", sort=order, title="predicted", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("truth:N", sort=order, title="truth"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=["truth:N", "predicted:N", alt.Tooltip("value:Q", format=fmt)],
    )
    half = max((r["value"] for r in records), default=1) / 2
    text = base.mark_text(fontSize=13).encode(
        text=alt.Text("value:Q", format=fmt),
        color=alt.condition(alt.datum.value > half, alt.value("white"), alt.value("black")),
    )
    chart: alt.LayerChart = (cells + text).properties(width=alt.Step(44), height=alt.Step(36))
    return chart


def status_bars(records: Records, order: Sequence[str]) -> alt.Chart:
    """Images per status at the end of each day (records: day, status, images, order), one
    stacked bar a day: the last day is today, its bar the state right now (as the tiles)."""
    day = "utcyearmonthdate(day):T"
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=records))
        .mark_bar()
        .encode(
            x=alt.X(day, title="day (UTC)"),
            y=alt.Y("images:Q", stack="zero", title="images", axis=count_axis()),
            color=alt.Color("status:N", sort=list(order), title="status"),
            order=alt.Order("order:Q"),
            tooltip=[alt.Tooltip(day, title="day (UTC)"), "status:N", "images:Q"],
        )
    )
    return chart


def reader_days(records: Records) -> alt.Chart:
    """Reviews per reader per day as grouped bars (records: day, reader, reviews)."""
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=records))
        .mark_bar()
        .encode(
            x=alt.X("day:O", title="day (UTC)"),
            y=alt.Y("reviews:Q", title="reviews", axis=count_axis()),
            color=alt.Color("reader:N", title="reader"),
            xOffset="reader:N",
            tooltip=["day:O", "reader:N", "reviews:Q"],
        )
    )
    return chart


def histogram(bins: Records, *, field: str) -> alt.Chart:
    """Pre-binned counts (records: from, to, labels): the data sent stays small at any size."""
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=bins))
        .mark_bar()
        .encode(
            x=alt.X("from:Q", bin="binned", title=field),
            x2="to:Q",
            y=alt.Y("labels:Q", title="labels", axis=count_axis()),
            tooltip=["from:Q", "to:Q", "labels:Q"],
        )
    )
    return chart


def kappa_heatmap(records: Records) -> alt.LayerChart:
    """Pairwise Cohen's kappa (records: reader_a, reader_b, kappa), on the -1..1 scale."""
    base = alt.Chart(alt.InlineData(values=records)).encode(
        x=alt.X("reader_b:N", title="reader"), y=alt.Y("reader_a:N", title="reader")
    )
    cells = base.mark_rect().encode(
        color=alt.Color("kappa:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue")),
        tooltip=["reader_a:N", "reader_b:N", alt.Tooltip("kappa:Q", format=".3f")],
    )
    text = base.mark_text().encode(text=alt.Text("kappa:Q", format=".2f"))
    chart: alt.LayerChart = cells + text
    return chart


def learning_lines(records: Records, *, x: str, temporal: bool) -> alt.Chart:
    """Metrics per version (records: x, metric, value, series, version); x is a time or a
    count (training images)."""
    x_axis = alt.X(f"{x}:T", title=x) if temporal else alt.X(f"{x}:Q", title=x, axis=count_axis())
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=records))
        .mark_line(point=True)
        .encode(
            x=x_axis,
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title="value"),
            color=alt.Color("metric:N"),
            strokeDash=alt.StrokeDash("series:N"),
            tooltip=["version:N", "series:N", "metric:N", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    return chart


def roc_curve(fpr: Sequence[float], tpr: Sequence[float], *, title: str) -> alt.LayerChart:
    """ROC curve with the chance diagonal."""
    points = [{"fpr": f, "tpr": t} for f, t in zip(fpr, tpr, strict=True)]
    curve = (
        alt.Chart(alt.InlineData(values=points), title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("fpr:Q", title="1 - specificity", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("tpr:Q", title="sensitivity", scale=alt.Scale(domain=[0, 1])),
        )
    )
    chance = (
        alt.Chart(alt.InlineData(values=[{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x="fpr:Q", y="tpr:Q")
    )
    chart: alt.LayerChart = (curve + chance).properties(width=360, height=360)
    return chart


def simulation_lines(records: Records, *, metric: str) -> alt.Chart:
    """One line per simulation (records: reviews, value, strategy, simulation)."""
    chart: alt.Chart = (
        alt.Chart(alt.InlineData(values=records), title=f"Simulation: {metric} vs expert reviews")
        .mark_line(point=True)
        .encode(
            x=alt.X("reviews:Q", title="expert reviews", axis=count_axis()),
            y=alt.Y("value:Q", title=metric),
            color=alt.Color("strategy:N"),
            detail="simulation:N",
            tooltip=["simulation:N", "reviews:Q", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    return chart
