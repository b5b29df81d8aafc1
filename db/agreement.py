"""Reader agreement on image-level BI-RADS: Fleiss' kappa (all readers) and pairwise Cohen's.

In `db` so that both the loop (`labeler sync`) and the dashboard use one definition.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations
from typing import TypeVar

import numpy as np
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from core.birads import Birads

K = TypeVar("K", bound=Hashable)


def fleiss(ratings: Sequence[Sequence[Birads]]) -> float | None:
    """One row per image, one category per reader (the same number of readers on every row)."""
    if not ratings or len({len(r) for r in ratings}) != 1:
        raise ValueError("Fleiss' kappa needs the same number of readers for every image")
    codes = np.array([[c.order for c in row] for row in ratings])
    table, _ = aggregate_raters(codes)
    value = float(fleiss_kappa(table, method="fleiss"))
    return None if np.isnan(value) else value


def pairwise_cohen(by_reader: Mapping[str, Mapping[K, Birads]]) -> dict[str, float | None]:
    """Cohen's kappa for each reader pair on the images both read, keyed "a|b"."""
    out: dict[str, float | None] = {}
    for a, b in combinations(sorted(by_reader), 2):
        shared = sorted(set(by_reader[a]) & set(by_reader[b]), key=repr)
        if not shared:
            out[f"{a}|{b}"] = None
            continue
        ya = [by_reader[a][i].value for i in shared]
        yb = [by_reader[b][i].value for i in shared]
        value = float(cohen_kappa_score(ya, yb)) if len(set(ya) | set(yb)) > 1 else None
        out[f"{a}|{b}"] = None if value is None or np.isnan(value) else value
    return out
