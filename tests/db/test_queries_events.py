"""db.queries.events: the audit trail."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.models import Event
from db.queries import events as event_queries


def test_record_count_and_latest(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        assert event_queries.latest_event_at(s, action="import") is None
        assert event_queries.count_events(s) == 0
    with sessions.begin() as s:
        for n in range(3):
            event_queries.record_event(
                s, actor="cli", action="import", subject=f"d{n}", detail={"n": n}
            )
        event_queries.record_event(s, actor="cli", action="promote", subject="v1", detail={})
    with sessions() as s:
        assert event_queries.count_events(s) == 4
        assert event_queries.count_events(s, action="import") == 3
        newest = s.query(Event).filter(Event.action == "import").order_by(Event.at.desc()).first()
        assert newest is not None
        assert event_queries.latest_event_at(s, action="import") == newest.at
        assert newest.detail["n"] in {0, 1, 2}
