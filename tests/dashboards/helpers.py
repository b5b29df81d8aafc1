"""Reading what a page shows: chart datasets and dataframes from an AppTest run."""

from __future__ import annotations

import json
from typing import Any

from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest


def charts(at: AppTest) -> list[tuple[str, list[dict[str, Any]]]]:
    """(spec JSON, rows of its first dataset) for every Altair chart on the page."""
    out = []
    for element in at.get("vega_lite_chart"):
        proto: Any = element.proto
        rows: list[dict[str, Any]] = []
        if proto.datasets:
            frame = convert_arrow_bytes_to_pandas_df(proto.datasets[0].data.data)
            rows = frame.to_dict("records")
        out.append((proto.spec, rows))
    return out


def chart_titled(at: AppTest, title: str) -> list[dict[str, Any]]:
    """Rows of the one chart whose title is `title`."""
    found = [rows for spec, rows in charts(at) if _title(json.loads(spec)) == title]
    assert len(found) == 1, f"{len(found)} charts titled {title!r}"
    return found[0]


def chart_marked(at: AppTest, mark: str) -> list[dict[str, Any]]:
    """Rows of the one chart drawn with marks of type `mark` (area, bar, ...)."""
    found = [
        rows for spec, rows in charts(at) if json.loads(spec).get("mark", {}).get("type") == mark
    ]
    assert len(found) == 1, f"{len(found)} charts with {mark} marks"
    return found[0]


def _title(spec: dict[str, Any]) -> str | None:
    for part in (spec, *spec.get("layer", [])):
        title = part.get("title")
        if isinstance(title, str):
            return title
    return None


def table(at: AppTest, *, with_column: str) -> list[dict[str, Any]]:
    """Rows of the one dataframe that has a column named `with_column`."""
    found = [df for df in (d.value for d in at.dataframe) if with_column in df.columns]
    assert len(found) == 1, f"{len(found)} tables with a column {with_column!r}"
    rows: list[dict[str, Any]] = found[0].to_dict("records")
    return rows


def rows_of_tables(at: AppTest, *, with_column: str) -> list[dict[str, Any]]:
    """Rows of every dataframe that has a column named `with_column`, in page order."""
    rows: list[dict[str, Any]] = []
    for d in at.dataframe:
        if with_column in d.value.columns:
            rows += d.value.to_dict("records")
    return rows


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, f"{len(values)} metrics labelled {label!r}"
    return str(values[0])


def chart_encoding(at: AppTest, field: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(spec, rows) of the one chart with a channel on `field` (day, status, reviews, ...)."""
    found = [
        (spec, rows)
        for spec, rows in ((json.loads(s), r) for s, r in charts(at))
        if any(channel.get("field") == field for channel in encodings(spec))
    ]
    assert len(found) == 1, f"{len(found)} charts encode {field!r}"
    return found[0]


def encodings(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every encoding channel of a chart spec and of its layers (tooltips left out)."""
    out = []
    for part in (spec, *spec.get("layer", [])):
        for name, channel in part.get("encoding", {}).items():
            if name != "tooltip" and isinstance(channel, dict):
                out.append(channel)
    return out


def page_texts(at: AppTest) -> list[str]:
    """Everything a person reads on the page as text: headings, captions, messages, metric
    labels and values, widget labels and options, image captions, chart and axis titles."""
    out: list[str] = []
    out += [str(e.value) for e in [*at.title, *at.header, *at.subheader, *at.caption]]
    out += [str(e.value) for e in [*at.markdown, *at.info, *at.warning, *at.error, *at.success]]
    out += [f"{m.label}: {m.value}" for m in at.metric]
    for widget in [*at.selectbox, *at.multiselect]:
        out += [widget.label, *(str(o) for o in widget.options)]
    out += [w.label for w in [*at.checkbox, *at.toggle]]
    for image in at.get("image"):
        out += [str(c) for c in getattr(image, "captions", [])]
    for spec, _ in charts(at):
        parsed = json.loads(spec)
        out += [t for t in [_title(parsed)] if t is not None]
        out += [str(c["title"]) for c in encodings(parsed) if "title" in c]
    for frame in (d.value for d in at.dataframe):
        out += [str(c) for c in frame.columns]
    return out
