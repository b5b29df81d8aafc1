"""Progress page: webhook events the sync set aside are shown with their reasons."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from db.queries import studio as studio_queries
from db.reports.progress import set_aside_events
from tests.dashboards.helpers import table
from tests.dashboards.seed import Plan
from tests.labeler.studio.fake import store_event


def test_set_aside_events_are_listed_with_their_reasons(
    seeded: Plan, sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("progress")
    assert not [w for w in at.warning if "set aside" in w.value]  # nothing to show: no section
    ids = [store_event(sessions, {"action": "ANNOTATION_CREATED"}) for _ in range(3)]
    with sessions.begin() as session:
        for event_id in ids[:2]:
            reason = f"annotation {event_id}: result must be a list of regions, got str"
            studio_queries.set_aside_studio_event(session, event_id=event_id, reason=reason)
    with sessions() as session:
        report = set_aside_events(session)
    st.cache_data.clear()  # the page caches reads for 30 s
    assert report.count == 2 and [e.id for e in report.newest] == ids[1::-1]
    at = open_page("progress")
    assert any("2 webhook events" in w.value for w in at.warning)
    rows = table(at, with_column="reason")
    assert [r["event"] for r in rows] == ids[1::-1]
    assert rows[0]["reason"].endswith("got str") and rows[0]["action"] == "ANNOTATION_CREATED"
