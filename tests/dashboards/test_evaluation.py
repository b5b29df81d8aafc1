"""Evaluation page: Tables I-III and the ROC curve equal what the confusion matrices say.

Expected values are computed here by hand from the plan's matrices (one-vs-rest counts, Wilson
intervals from statsmodels), not read back from the stored payload.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pytest
import streamlit as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from statsmodels.stats.proportion import proportion_confint
from streamlit.testing.v1 import AppTest

from db.models import Evaluation
from tests.dashboards.helpers import chart_titled, metric, rows_of_tables, table
from tests.dashboards.seed import FIVE_WAY, Plan

IntMatrix = npt.NDArray[np.int64]


def cell(successes: int, total: int) -> str:
    low, high = proportion_confint(successes, total, alpha=0.05, method="wilson")
    return f"{100 * successes / total:.1f} ({100 * low:.1f}-{100 * high:.1f})"


def expected_rates(m: IntMatrix, index: int) -> dict[str, str]:
    tp = int(m[index, index])
    fn = int(m[index].sum()) - tp
    fp = int(m[:, index].sum()) - tp
    tn = int(m.sum()) - tp - fn - fp
    return {
        "ACC % (95% CI)": cell(tp + tn, tp + tn + fp + fn),
        "SEN % (95% CI)": cell(tp, tp + fn),
        "SPE % (95% CI)": cell(tn, tn + fp),
    }


def assert_heatmaps(at: AppTest, title: str, labels: list[str], matrix: IntMatrix) -> None:
    counts = {
        (r["truth"], r["predicted"]): r["value"] for r in chart_titled(at, f"{title}: counts")
    }
    rates = chart_titled(at, f"{title}: row-normalised")
    for i, truth in enumerate(labels):
        for j, pred in enumerate(labels):
            assert counts[(truth, pred)] == matrix[i, j]
    for r in rates:
        i, j = labels.index(r["truth"]), labels.index(r["predicted"])
        assert r["value"] == pytest.approx(matrix[i, j] / matrix[i].sum())


@pytest.fixture
def open_version(
    seeded: Plan, sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> Callable[[str], AppTest]:
    """The evaluation page with one version's evaluation chosen in the selectbox."""

    def run(version: str) -> AppTest:
        with sessions() as s:
            evaluation_id = s.scalars(
                select(Evaluation.id).where(Evaluation.model_version_id == version)
            ).one()
        at = open_page("evaluation")
        box = at.selectbox(key="evaluation")
        assert box.format_func(evaluation_id).startswith(f"{version} ")
        box.set_value(evaluation_id).run()
        assert not at.exception
        return at

    return run


def test_table_i_counts_rates_and_intervals(
    seeded: Plan, open_version: Callable[[str], AppTest]
) -> None:
    at = open_version("v2")
    matrix = np.array(seeded.birads_matrix, dtype=np.int64)
    assert metric(at, "images") == str(matrix.sum())
    assert_heatmaps(at, "BI-RADS confusion matrix", FIVE_WAY, matrix)
    rows = table(at, with_column="BI-RADS")
    assert [r["BI-RADS"] for r in rows] == FIVE_WAY
    for index, row in enumerate(rows):
        assert {k: row[k] for k in expected_rates(matrix, index)} == expected_rates(matrix, index)
        assert row["positives"] == matrix[index].sum()


def test_each_evaluation_says_which_arithmetic_scored_it(
    open_version: Callable[[str], AppTest],
) -> None:
    captions = {v: [str(c.value) for c in open_version(v).caption] for v in ("v2", "v3")}
    assert any("v2 in fp32 arithmetic" in c for c in captions["v2"])
    assert any("v3 in int8 arithmetic" in c for c in captions["v3"])


def test_table_ii_screening_matrix(seeded: Plan, open_version: Callable[[str], AppTest]) -> None:
    at = open_version("v2")
    matrix = np.array(seeded.screening_matrix, dtype=np.int64)
    assert_heatmaps(at, "Screening matrix", ["benign", "malignant"], matrix)
    (row,) = [r for r in rows_of_tables(at, with_column="positive") if r["positive"] == "malignant"]
    assert {k: row[k] for k in expected_rates(matrix, 1)} == expected_rates(matrix, 1)


def test_table_iii_4a_4b_matrix(seeded: Plan, open_version: Callable[[str], AppTest]) -> None:
    at = open_version("v3")
    pairs = Counter(zip(seeded.expert_4ab, seeded.split_4ab, strict=True))
    labels = ["4A", "4B"]
    matrix = np.array([[pairs[(t, p)] for p in labels] for t in labels], dtype=np.int64)
    assert_heatmaps(at, "4A/4B matrix", labels, matrix)
    (row,) = [r for r in rows_of_tables(at, with_column="positive") if r["positive"] == "4B"]
    assert {k: row[k] for k in expected_rates(matrix, 1)} == expected_rates(matrix, 1)
    assert any("labeler predict --model v3" in str(i.value) for i in at.info)  # no ROC inputs


def test_roc_curve_from_pre_labels(seeded: Plan, open_version: Callable[[str], AppTest]) -> None:
    at = open_version("v2")
    scored = [
        (p.reference in ("4", "5"), p.p_malignant)
        for p in seeded.images
        if p.split.value == "test" and p.predicted is not None
    ]
    positives = [s for malignant, s in scored if malignant]
    negatives = [s for malignant, s in scored if not malignant]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    auc = wins / (len(positives) * len(negatives))
    title = f"from this version's pre-labels on {len(scored)} test images, AUC {auc:.3f}"
    points = chart_titled(at, title)
    assert (points[0]["fpr"], points[0]["tpr"]) == (0.0, 0.0)
    assert (points[-1]["fpr"], points[-1]["tpr"]) == (1.0, 1.0)
    steps = [(b["fpr"] - a["fpr"]) * b["tpr"] for a, b in pairwise(points)]
    assert sum(steps) == pytest.approx(auc)  # no ties in the plan: the curve's area is the AUC


def test_table_iii_caption_says_only_what_was_stored(
    seeded: Plan, sessions: sessionmaker[Session], open_version: Callable[[str], AppTest]
) -> None:
    at = open_version("v3")
    n_images = len(seeded.expert_4ab)
    expected = f"4B when P(BI-RADS 5) >= 0.35; {n_images} expert-labelled images."
    assert expected in [c.value for c in at.caption]
    with sessions.begin() as s:  # an evaluation stored before the threshold and count were
        row = s.scalars(select(Evaluation).where(Evaluation.model_version_id == "v3")).one()
        split = row.metrics.birads4_split
        assert split is not None
        older = split.model_copy(update={"threshold": None, "n_images": None})
        row.metrics = row.metrics.model_copy(update={"birads4_split": older})
    st.cache_data.clear()
    at = open_version("v3")
    captions = [c.value for c in at.caption]
    assert "4B by the model's P(BI-RADS 5) (its threshold was not stored)." in captions
    assert not any("None" in c for c in captions)
