"""db.queries.studio: webhook events (claimed once, or set aside) and the tasks we created."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.queries import studio as studio_queries
from tests.db.rows import add_images, add_version

CREATED, UPDATED = "ANNOTATION_CREATED", "ANNOTATION_UPDATED"


def _event(action: str, annotation: int) -> studio_queries.NewStudioEvent:
    return studio_queries.NewStudioEvent(
        action, {"id": annotation}, 1, 100 + annotation, annotation
    )


def test_events_are_claimed_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        ids = [studio_queries.add_studio_event(s, event=_event(CREATED, n)).id for n in (1, 2)]
        studio_queries.add_studio_event(s, event=_event("PROJECT_UPDATED", 3))
    with sessions() as s:
        assert studio_queries.unprocessed_studio_event_ids(s, actions=[CREATED, UPDATED]) == ids
    with sessions.begin() as s:
        claimed = studio_queries.claim_studio_event(s, event_id=ids[0])
        assert claimed is not None and claimed.processed_at is not None
        assert claimed.payload == {"id": 1}
        assert studio_queries.claim_studio_event(s, event_id=ids[0]) is None
    with sessions() as s:
        assert studio_queries.count_studio_events(s, action=CREATED) == 2
        assert studio_queries.count_studio_events(s, action=CREATED, processed=True) == 1
        assert studio_queries.count_studio_events(s, action=CREATED, processed=False) == 1
        waiting = studio_queries.unprocessed_studio_events(s, actions=[CREATED])
        assert [e.id for e in waiting] == ids[1:]
    with sessions.begin() as s:
        studio_queries.mark_studio_events_processed(s, ids=ids[1:])
    with sessions() as s:
        assert studio_queries.unprocessed_studio_event_ids(s, actions=[CREATED]) == []


def test_set_aside_events_keep_their_reason(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        ids = [studio_queries.add_studio_event(s, event=_event(CREATED, n)).id for n in (1, 2, 3)]
        for event_id in ids[:2]:
            studio_queries.set_aside_studio_event(s, event_id=event_id, reason=f"bad {event_id}")
    with sessions() as s:
        assert studio_queries.count_set_aside_studio_events(s) == 2
        newest = studio_queries.set_aside_studio_events(s, limit=1)
        assert [(e.id, e.reason, e.ls_annotation_id) for e in newest] == [
            (ids[1], f"bad {ids[1]}", 2)
        ]
        assert studio_queries.unprocessed_studio_event_ids(s, actions=[CREATED]) == ids[2:]


def test_tasks_are_recorded_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "v1")
        add_version(s, "v2")
        a, b = add_images(s, 2)
        first = studio_queries.add_studio_task(
            s, image_id=a.id, round=1, ls_project_id=7, ls_task_id=500, model_version_id="v1"
        )
        same_place = studio_queries.add_studio_task(
            s, image_id=a.id, round=1, ls_project_id=7, ls_task_id=501, model_version_id="v1"
        )
        assert same_place.id == first.id and same_place.ls_task_id == 500
        studio_queries.add_studio_task(
            s, image_id=a.id, round=2, ls_project_id=7, ls_task_id=502, model_version_id=None
        )
        studio_queries.add_studio_task(
            s, image_id=b.id, round=1, ls_project_id=8, ls_task_id=503, model_version_id=None
        )
        studio_queries.set_studio_task_version(s, ls_task_id=500, model_version_id="v2")
    with sessions() as s:
        assert sorted(t.ls_task_id for t in studio_queries.studio_tasks(s, ls_project_id=7)) == [
            500,
            502,
        ]
        task = studio_queries.studio_task(s, ls_task_id=500)
        assert task is not None and task.model_version_id == "v2"
        assert studio_queries.studio_task(s, ls_task_id=501) is None
        round_two = studio_queries.studio_tasks_for(s, image_id=a.id, round=2)
        assert [t.ls_task_id for t in round_two] == [502]
