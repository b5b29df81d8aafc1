"""Reader agreement on image-level BI-RADS: Fleiss' kappa (all readers) and pairwise Cohen's.

In `db` so that both the loop (`labeler sync`) and the dashboard use one definition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FleissOver:
    """Fleiss' kappa over the images read by `readers` readers each; `left_out` were read by
    another number of readers."""

    kappa: float | None
    images: int
    readers: int
    left_out: int


def fleiss_over(ratings: Iterable[Mapping[str, Birads]], *, readers: int | None) -> FleissOver:
    """Fleiss' kappa of one round: one mapping reader -> category per image.

    Fleiss needs the same number of ratings per image, so only images read by `readers` readers
    count (None: the round's most common number, the larger on a tie); one reader: no kappa.
    """
    rows = [list(by_reader.values()) for by_reader in ratings]
    if readers is None:
        sizes = Counter(len(row) for row in rows)
        readers = max(sizes, key=lambda n: (sizes[n], n)) if sizes else 0
    full = [row for row in rows if len(row) == readers]
    kappa = fleiss(full) if full and readers > 1 else None
    return FleissOver(kappa, len(full), readers, len(rows) - len(full))


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


def kappa_text(kappa: float | None, *, images: int, readers: int = 2) -> str:
    """A kappa as `labeler sync` and the dashboard print it: three decimals, or "n/a" and why.

    `images`: how many images the kappa was computed on; `readers`: how many readers per image
    it needed (Fleiss over a quorum needs the quorum; Cohen and the dashboard's Fleiss need 2).
    """
    if kappa is not None:
        return f"{kappa:.3f}"
    if images == 0 or readers < 2:
        return f"n/a (fewer than {max(readers, 2)} readers on an image)"
    return "n/a (every reading in one category)"
