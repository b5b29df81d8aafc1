"""Tables as the paper prints them: rates in percent with their 95% CI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.results import Estimate
from db.reports.evaluation import RatesRow

RATE_NAMES = ("ACC", "SEN", "SPE")


def rate_cell(rate: Estimate | None) -> str:
    """'81.2 (71.0-88.9)': percent with the Wilson 95% CI; '-' where undefined (no cases)."""
    if rate is None:
        return "-"
    return f"{100 * rate.value:.1f} ({100 * rate.ci_low:.1f}-{100 * rate.ci_high:.1f})"


def rates_records(rows: Sequence[RatesRow], *, label: str) -> list[dict[str, Any]]:
    """Table I layout: one row per category, ACC/SEN/SPE % (95% CI), positives and images."""
    records = []
    for row in rows:
        record: dict[str, Any] = {label: row.label}
        r = row.rates
        for name, rate in zip(RATE_NAMES, (r.acc, r.sen, r.spe), strict=True):
            record[f"{name} % (95% CI)"] = rate_cell(rate)
        record["positives"] = r.sen.total if r.sen is not None else 0
        record["images"] = r.acc.total if r.acc is not None else 0
        records.append(record)
    return records
