"""Progress: images by status over time, reviews per reader per day, pre-label to consensus,
and the webhook events the sync set aside (could not apply) with their reasons."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import streamlit as st

from core import text
from core.text import plural
from dashboards import charts, data
from db.models import Split
from db.queries.images import ImageCounts
from db.reports.progress import (
    ConsensusTimes,
    ImageStatus,
    ReaderDay,
    SetAsideEvents,
    StatusTimeline,
)


def status_section(timeline: StatusTimeline) -> None:
    st.subheader("Images by status")
    for column, status in zip(st.columns(len(ImageStatus)), ImageStatus, strict=True):
        column.metric(status.value, timeline.current[status])
    if not timeline.days:
        return
    order = [s.value for s in ImageStatus]
    records = [
        {"day": day.isoformat(), "status": s.value, "images": n, "order": order.index(s.value)}
        for s in ImageStatus
        for day, n in zip(timeline.days, timeline.counts[s], strict=True)
    ]
    st.altair_chart(charts.status_bars(records, order), width="stretch")
    st.caption(
        "Each bar: the images in each status at the end of that day (UTC); "
        f"the last bar, {timeline.days[-1].isoformat()}, is now, as the counts above."
    )


def reader_section(days: list[ReaderDay]) -> None:
    st.subheader("Reviews per reader per day")
    if not days:
        st.info("No reviews yet: they arrive from Label Studio once readers start.")
        return
    records = [{"day": d.day.isoformat(), "reader": d.reader, "reviews": d.reviews} for d in days]
    st.altair_chart(charts.reader_days(records), width="stretch")
    totals: dict[str, list[int]] = defaultdict(list)
    for d in days:
        totals[d.reader].append(d.reviews)
    st.dataframe(
        [
            {"reader": r, "reviews": sum(n), "days": len(n), "per day": round(sum(n) / len(n), 1)}
            for r, n in sorted(totals.items())
        ],
        hide_index=True,
    )


def consensus_section(times: ConsensusTimes) -> None:
    st.subheader("Time from pre-label to consensus")
    if not len(times):
        st.info("No decided labels yet.")
        return
    hours = np.asarray(times.hours)
    left, middle, right = st.columns(3)
    left.metric("decided labels", len(times))
    middle.metric("median hours", f"{np.median(hours):.1f}")
    right.metric("90th percentile hours", f"{np.quantile(hours, 0.9):.1f}")
    counts, edges = np.histogram(hours, bins=min(30, max(1, len(np.unique(hours)))))
    bins = [
        {"from": float(lo), "to": float(hi), "labels": int(n)}
        for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)
    ]
    st.altair_chart(charts.histogram(bins, field="hours"), width="stretch")


def set_aside_section(events: SetAsideEvents) -> None:
    """Shown only when there is something to act on: events `labeler sync` could not apply."""
    if not events.count:
        return
    st.subheader("Webhook events set aside")
    st.warning(
        f"{plural(events.count, 'webhook event')} could not be applied and "
        f"{'was' if events.count == 1 else 'were'} set aside "
        "(`labeler studio status` lists them too); the other events were applied."
    )
    st.dataframe(
        [
            {
                "event": e.id,
                "action": e.action,
                "received": e.received_at.isoformat(timespec="seconds"),
                "reason": e.reason,
            }
            for e in events.newest
        ],
        hide_index=True,
    )


def image_totals(counts: ImageCounts) -> str:
    """'88 images in 1 dataset (train 57, val 12, test 19)'."""
    splits = text.counts(counts.by_split, order=[s.value for s in Split])
    where = f" ({splits})" if splits else ""
    return f"{plural(counts.total, 'image')} in {plural(len(counts.by_dataset), 'dataset')}{where}."


def render() -> None:
    url = data.settings().db_url
    st.title("Progress")
    st.caption(image_totals(data.image_counts(url)))
    status_section(data.status_timeline(url))
    reader_section(data.reviews_per_reader_day(url))
    consensus_section(data.consensus_times(url))
    set_aside_section(data.set_aside_events(url))


render()
