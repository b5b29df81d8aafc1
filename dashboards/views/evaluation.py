"""Evaluation of one version: the paper's Tables I-III and the screening ROC curve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from core import text
from core.results import Birads4Split, ConfusionMatrix, Roc
from core.text import plural
from dashboards import charts, data, tables
from db.reports.evaluation import EvaluationKey, EvaluationReport, RatesRow
from ml_backend.evaluation.metrics import roc_auc, roc_points


def choose(keys: list[EvaluationKey]) -> EvaluationKey:
    """Newest evaluation of an active version first, then the rest newest first."""
    ordered = sorted(keys, key=lambda k: not k.active)
    titles = {k.id: k.title for k in ordered}
    chosen = st.selectbox(
        "Evaluation", list(titles), format_func=titles.__getitem__, key="evaluation"
    )
    return next((k for k in ordered if k.id == chosen), ordered[0])


def matrix_pair(matrix: ConfusionMatrix, title: str) -> None:
    left, right = st.columns(2)
    left.altair_chart(charts.confusion_heatmap(matrix, normalised=False, title=f"{title}: counts"))
    right.altair_chart(
        charts.confusion_heatmap(matrix, normalised=True, title=f"{title}: row-normalised")
    )


def table(
    title: str,
    matrix: ConfusionMatrix | None,
    rates: Sequence[RatesRow],
    *,
    label: str,
    caption: str,
    missing: str,
) -> None:
    """One of the paper's tables: the matrix as counts and row-normalised, then ACC/SEN/SPE."""
    st.subheader(title)
    if matrix is None or not matrix.labels:
        st.info(missing)
        return
    matrix_pair(matrix, title.split(": ", 1)[-1])
    st.dataframe(tables.rates_records(rates, label=label), hide_index=True)
    st.caption(caption)


def tables_i_to_iii(report: EvaluationReport) -> None:
    m = report.metrics
    split = m.birads4_split
    table(
        "Table I: BI-RADS confusion matrix",
        m.birads.matrix,
        report.per_category,
        label="BI-RADS",
        caption="Each category against the rest; Wilson 95% confidence intervals.",
        missing="This evaluation stored no BI-RADS confusion matrix.",
    )
    table(
        "Table II: Screening matrix",
        m.screening.matrix,
        [report.screening_rates],
        label="positive",
        caption=f"Malignant: 4B, 4C, 5; plain 4 counted as "
        f"{m.screening.plain_4_counted_as.value}. ROC AUC of the malignancy score: "
        f"{text.number(m.screening.auc)}.",
        missing="This evaluation stored no screening matrix.",
    )
    table(
        "Table III: 4A/4B matrix",
        split.matrix if split is not None else None,
        [r for r in (report.birads4_rates,) if r is not None],
        label="positive",
        caption=table_iii_caption(split),
        missing="Only a model trained without BI-RADS 4 (`labeler train --exclude-birads 4`), "
        "with expert 4A/4B images in the data, has Table III.",
    )


def table_iii_caption(split: Birads4Split | None) -> str:
    """The 4A/4B rule and its images, saying only what the evaluation stored."""
    if split is None:
        return ""
    if split.threshold is None:
        rule = "4B by the model's P(BI-RADS 5) (its threshold was not stored)"
    else:
        rule = f"4B when P(BI-RADS 5) >= {split.threshold:g}"
    if split.n_images is None:
        return f"{rule}."
    return f"{rule}; {plural(split.n_images, 'expert-labelled image')}."


MAX_CURVE_POINTS = 400


def thinned(points: Roc) -> Roc:
    """At most MAX_CURVE_POINTS vertices, ends kept: a curve of thousands of thresholds draws
    the same and costs the browser (and Streamlit) far less."""
    n = len(points.fpr)
    if n <= MAX_CURVE_POINTS:
        return points
    keep = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))
    return Roc(fpr=tuple(points.fpr[i] for i in keep), tpr=tuple(points.tpr[i] for i in keep))


def pre_label_roc(url: str, key: EvaluationKey) -> tuple[Roc, float, int] | None:
    """The curve from the version's stored pre-labels, for evaluations stored without one."""
    scores = data.screening_scores(url, key.model_version_id, key.split)
    curve = roc_points(scores.malignant, scores.score)
    auc = roc_auc(scores.malignant, scores.score)
    if curve is None or auc is None:
        return None
    return curve, auc, len(scores.score)


def roc_section(url: str, report: EvaluationReport) -> None:
    st.subheader("ROC curve (screening)")
    screening = report.metrics.screening
    if screening.roc is not None:
        points = screening.roc
        title = f"stored with the evaluation, AUC {text.number(screening.auc)}"
    elif (computed := pre_label_roc(url, report.key)) is not None:
        points, auc, n = computed
        images = plural(n, f"{report.key.split} image")
        title = f"from this version's pre-labels on {images}, AUC {auc:.3f}"
    else:
        st.info(
            "No curve: this version has no pre-labels with box probabilities on both benign and "
            f"malignant {report.key.split} images. Run `labeler predict --model "
            f"{report.key.model_version_id}` to draw it."
        )
        return
    drawn = thinned(points)
    st.altair_chart(charts.roc_curve(drawn.fpr, drawn.tpr, title=title))


def headline(report: EvaluationReport) -> None:
    d = report.metrics.detection
    cells = (
        ("images", report.metrics.n_images),
        ("mAP@0.5", d.map50),
        ("lesion mAP@0.5", d.lesion_map50),
        ("lesion recall@0.5", d.lesion_recall50),
        ("screening AUC", report.metrics.screening.auc),
    )
    for column, (label, value) in zip(st.columns(len(cells)), cells, strict=True):
        shown = value if isinstance(value, int) else text.number(value)
        column.metric(label, shown)
    source = report.metrics.prelabel
    if source is not None:
        grader = f"the encoder {source.grader_version}" if source.grader_version else "the detector"
        st.caption(
            f"Scored as pre-labels run: {source.detector} in {source.precision} arithmetic, "
            f"graded by {grader}."
        )


def render() -> None:
    url = data.settings().db_url
    st.title("Evaluation")
    keys = data.evaluation_keys(url)
    if not keys:
        st.info("No evaluation stored yet: run `labeler evaluate` (after `labeler train`).")
        return
    key = choose(keys)
    report = data.evaluation_report(url, key.id)
    if report is None:
        st.warning("That evaluation is gone; reload the page.")
        return
    headline(report)
    tables_i_to_iii(report)
    roc_section(url, report)


render()
