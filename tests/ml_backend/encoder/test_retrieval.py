"""Retrieval metrics on a constructed ranking, computed by hand."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from ml_backend.encoder.retrieval import (
    RetrievalScores,
    Setting,
    average_precision_at_k,
    precision_at_k,
    retrieval_scores,
    retrieval_table,
)


def test_average_precision_and_precision_at_k_by_hand() -> None:
    relevance = np.array([1, 0, 1, 0, 0, 1], dtype=bool)  # 4 relevant in the gallery, 3 shown
    # AP@10 = (P@1 + P@3 + P@6) / min(4, 10) = (1 + 2/3 + 1/2) / 4 = 13/24.
    assert average_precision_at_k(relevance, 4, 10) == pytest.approx(13 / 24)
    # AP@3 = (1 + 2/3) / min(4, 3) = 5/9.
    assert average_precision_at_k(relevance, 4, 3) == pytest.approx(5 / 9)
    assert precision_at_k(relevance, 1) == 1.0
    assert precision_at_k(relevance, 3) == pytest.approx(2 / 3)
    assert precision_at_k(relevance, 10) == pytest.approx(3 / 6)  # gallery of 6 < k


def _angles(*degrees: float) -> npt.NDArray[np.float64]:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


# Row: angle, label, patient. Cosine ranks by angular distance.
#   0:   0 deg, A, p      1: 10 deg, A, p      2: 25 deg, B, q      3: 180 deg, B, r
EMB = _angles(0, 10, 25, 180)
LABELS = ["A", "A", "B", "B"]
PATIENTS = ["p", "p", "q", "r"]


def test_all_patients_setting() -> None:
    # q0 ranks 1, 2, 3 -> rel 1 0 0: AP 1, P@1 1, P@10 1/3.  q1 ranks 0, 2, 3 -> same.
    # q2 ranks 1, 0, 3 -> rel 0 0 1: AP 1/3, P@1 0, P@10 1/3.  q3 ranks 2, 1, 0 -> rel 1 0 0.
    scores = retrieval_scores(EMB, LABELS, PATIENTS, Setting.ALL)
    assert scores.map_at_10 == pytest.approx((1 + 1 + 1 / 3 + 1) / 4)
    assert scores.precision_at_1 == pytest.approx(3 / 4)
    assert scores.precision_at_10 == pytest.approx(1 / 3)
    assert (scores.n_queries, scores.n_skipped) == (4, 0)


def test_same_patient_setting() -> None:
    # Only q0 and q1 have a same-patient gallery (each other, relevant); q2, q3 are skipped.
    scores = retrieval_scores(EMB, LABELS, PATIENTS, Setting.SAME_PATIENT)
    assert scores == RetrievalScores(Setting.SAME_PATIENT, 1.0, 1.0, 1.0, 2, 2)


def test_cross_patient_setting() -> None:
    # q0, q1: gallery {2, 3}, both B: nothing relevant, skipped.
    # q2: gallery {0, 1, 3} ranked 1, 0, 3 -> rel 0 0 1: AP 1/3, P@1 0, P@10 1/3.
    # q3: gallery {0, 1, 2} ranked 2, 1, 0 -> rel 1 0 0: AP 1, P@1 1, P@10 1/3.
    scores = retrieval_scores(EMB, LABELS, PATIENTS, Setting.CROSS_PATIENT)
    assert scores.map_at_10 == pytest.approx(2 / 3)
    assert scores.precision_at_1 == pytest.approx(1 / 2)
    assert scores.precision_at_10 == pytest.approx(1 / 3)
    assert (scores.n_queries, scores.n_skipped) == (2, 2)


def test_table_has_the_three_settings_and_ignores_the_embedding_scale() -> None:
    table = retrieval_table(EMB * np.array([[3.0], [0.5], [2.0], [7.0]]), LABELS, PATIENTS)
    assert [row.setting for row in table] == list(Setting)
    assert table[0] == retrieval_scores(EMB, LABELS, PATIENTS, Setting.ALL)


def test_the_query_itself_is_never_retrieved() -> None:
    # Two identical embeddings of different labels: without self-exclusion each query would
    # find itself (relevant) first; here it finds the other one (not relevant) first.
    emb = _angles(0, 0, 90)
    scores = retrieval_scores(emb, ["A", "B", "A"], ["p", "q", "r"], Setting.ALL)
    # q0: ranks 1 (0 deg, B), 2 (A): AP = (1/2) / 1, P@1 0. q1: nothing relevant, skipped.
    # q2: ranks 0, 1 tied at 90 deg (row order) -> rel 1 0: AP 1, P@1 1.
    assert scores.map_at_10 == pytest.approx((0.5 + 1) / 2)
    assert scores.precision_at_1 == pytest.approx(0.5)
    assert scores.n_skipped == 1 and not math.isnan(scores.precision_at_10 or math.nan)
