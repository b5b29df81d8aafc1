"""Retrieval metrics on an embedding matrix (Qi et al., Table 2): mAP@10, P@1, P@10.

Every row is a query; its gallery is every other row (the query itself is always excluded),
restricted by setting:
  all             every other image;
  same-patient    only the query patient's other images (e.g. the other view of its lesion);
  cross-patient   only other patients' images (what a reader's "similar lesions" grid shows).
Ranking is by cosine similarity, ties by row order. An item is relevant when its label equals
the query's: pass pathology (benign/malignant) or BI-RADS for class retrieval, or lesion ids
for "find the other view" (that is only meaningful in the all and same-patient settings).

Definitions (scikit-learn has no cut-off retrieval metrics, so these few lines are ours):
  P@k   = relevant among the top min(k, g) / min(k, g), g = gallery size (a 2-image
          same-patient gallery is not penalised for having fewer than k items);
  AP@k  = sum_{i <= k} P@i * rel_i / min(R, k), R = relevant items in the gallery;
  mAP@k = mean AP@k over queries.
Queries whose gallery holds no relevant item cannot be answered and are left out of all three
(reported as n_skipped), so the settings differ in which queries they score.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

K = 10  # the cut-off of mAP@10 and P@10


class Setting(StrEnum):
    ALL = "all"
    SAME_PATIENT = "same-patient"
    CROSS_PATIENT = "cross-patient"


@dataclass(frozen=True)
class RetrievalScores:
    setting: Setting
    map_at_10: float | None  # None when no query could be scored
    precision_at_1: float | None
    precision_at_10: float | None
    n_queries: int
    n_skipped: int  # queries without a relevant item in their gallery


def cosine_similarity(embeddings: npt.ArrayLike) -> npt.NDArray[np.float64]:
    z = np.asarray(embeddings, dtype=np.float64)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True).clip(min=1e-12)
    sim: npt.NDArray[np.float64] = unit @ unit.T
    return sim


def gallery_mask(patient_ids: npt.ArrayLike, setting: Setting) -> npt.NDArray[np.bool_]:
    """N x N: which rows are in each query's gallery (never the query itself)."""
    patients = np.asarray(patient_ids)
    same = patients[:, None] == patients[None, :]
    mask: npt.NDArray[np.bool_]
    if setting is Setting.ALL:
        mask = np.ones_like(same)
    elif setting is Setting.SAME_PATIENT:
        mask = same.copy()
    else:
        mask = ~same
    np.fill_diagonal(mask, False)
    return mask


def average_precision_at_k(relevance: npt.NDArray[np.bool_], n_relevant: int, k: int) -> float:
    """AP@k of one ranked relevance vector (best first); n_relevant counts the whole gallery."""
    top = relevance[:k].astype(np.float64)
    precision_at_i = np.cumsum(top) / np.arange(1, len(top) + 1)
    return float((precision_at_i * top).sum() / min(n_relevant, k))


def precision_at_k(relevance: npt.NDArray[np.bool_], k: int) -> float:
    top = relevance[:k]
    return float(top.mean())


def retrieval_scores(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    patient_ids: npt.ArrayLike,
    setting: Setting,
) -> RetrievalScores:
    sim = cosine_similarity(embeddings)
    return ranked_scores(sim, gallery_mask(patient_ids, setting), np.asarray(labels), setting)


def ranked_scores(
    sim: npt.NDArray[np.floating[Any]],
    allowed: npt.NDArray[np.bool_],
    labels: npt.NDArray[Any],
    setting: Setting,
) -> RetrievalScores:
    """The scores of query rows: row q of `sim` and `allowed` ranks the gallery columns for
    query q, whose label is labels[q]; a query with no relevant item allowed is skipped."""
    aps: list[float] = []
    p1: list[float] = []
    pk: list[float] = []
    for q in range(len(sim)):
        candidates = np.flatnonzero(allowed[q])
        ranked = candidates[np.argsort(-sim[q, candidates], kind="stable")]
        relevance = labels[ranked] == labels[q]
        if not relevance.any():
            continue
        aps.append(average_precision_at_k(relevance, int(relevance.sum()), K))
        p1.append(precision_at_k(relevance, 1))
        pk.append(precision_at_k(relevance, K))
    return RetrievalScores(
        setting=setting,
        map_at_10=float(np.mean(aps)) if aps else None,
        precision_at_1=float(np.mean(p1)) if p1 else None,
        precision_at_10=float(np.mean(pk)) if pk else None,
        n_queries=len(aps),
        n_skipped=len(sim) - len(aps),
    )


def retrieval_table(
    embeddings: npt.ArrayLike,
    labels: npt.ArrayLike,
    patient_ids: npt.ArrayLike,
) -> tuple[RetrievalScores, ...]:
    """Qi et al.'s Table 2 rows: all, same-patient and cross-patient."""
    return tuple(retrieval_scores(embeddings, labels, patient_ids, s) for s in Setting)
