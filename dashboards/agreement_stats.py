"""Reader agreement from review columns: Fleiss' kappa per round, Cohen's kappa per reader pair.

The statistics are `db.agreement`'s (the same definitions `labeler sync` reports); this module
only shapes the dashboard's review columns into the rows they take.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from itertools import combinations
from typing import Any

from core.birads import Birads
from db.agreement import fleiss_over
from db.agreement import pairwise_cohen as cohen_by_pair
from db.reports.agreement import ReviewRatings

Item = tuple[int, int]  # (image id, round): one reading occasion


def readings(
    ratings: ReviewRatings, *, review_round: int | None = None
) -> dict[Item, dict[str, str]]:
    """Category per reader per (image, round); reviews without a category are left out."""
    out: dict[Item, dict[str, str]] = defaultdict(dict)
    for image_id, rnd, reader, birads in zip(
        ratings.image_id, ratings.review_round, ratings.reader, ratings.birads, strict=True
    ):
        if birads is not None and (review_round is None or rnd == review_round):
            out[(image_id, rnd)][reader] = birads
    return out


def fleiss_by_round(ratings: ReviewRatings) -> list[dict[str, Any]]:
    """Fleiss' kappa per round over the images read by the usual number of readers that round.

    Fleiss needs the same number of ratings per image: images with another number of readers
    than the round's most common one are left out, and the row says how many.
    """
    rounds: dict[int, list[dict[str, Birads]]] = defaultdict(list)
    for (_, rnd), by_reader in readings(ratings).items():
        rounds[rnd].append({reader: Birads(c) for reader, c in by_reader.items()})
    rows = []
    for rnd in sorted(rounds):
        result = fleiss_over(rounds[rnd], readers=None)
        rows.append(
            {
                "round": rnd,
                "images": result.images,
                "readers per image": result.readers,
                "images left out": result.left_out,
                "Fleiss' kappa": result.kappa,
            }
        )
    return rows


def pairwise_cohen(ratings: ReviewRatings, *, review_round: int | None) -> list[dict[str, Any]]:
    """Cohen's kappa per reader pair on the (image, round) occasions both read; None where it is
    undefined (nothing shared, or a single category between them)."""
    by_reader: dict[str, dict[Hashable, Birads]] = defaultdict(dict)
    for item, by in readings(ratings, review_round=review_round).items():
        for reader, category in by.items():
            by_reader[reader][item] = Birads(category)
    kappas = cohen_by_pair(by_reader)
    return [
        {
            "reader_a": a,
            "reader_b": b,
            "images": len(by_reader[a].keys() & by_reader[b].keys()),
            "kappa": kappas[f"{a}|{b}"],
        }
        for a, b in combinations(sorted(by_reader), 2)
    ]
