"""Sync against a fake Label Studio: bad events set aside, the rest applied, counted once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.models import LabelStatus, Review, StudioEvent
from db.queries import labels as label_queries
from db.queries import reviews as review_queries
from db.queries import studio as studio_queries
from labeler.context import AppContext
from labeler.lock import AlreadyRunningError, single_flight
from labeler.studio.sync import LOCK_NAME, SyncSummary, sync
from ml_backend.studio.format import parse_annotation
from tests.labeler.studio.fake import (
    PROJECT,
    FakeStudio,
    annotation,
    created,
    seed,
    store_event,
    task,
)


@pytest.fixture
def app(settings: Settings, sessions: sessionmaker[Session]) -> AppContext:
    return AppContext(settings)


def _reviews(sessions: sessionmaker[Session]) -> dict[int, str]:
    with sessions() as session:
        return {int(r.ls_annotation_id or 0): r.reader for r in session.scalars(select(Review))}


def test_a_malformed_event_is_set_aside_and_the_rest_go_on(
    app: AppContext, sessions: sessionmaker[Session]
) -> None:
    seed(sessions)
    good = [store_event(sessions, created(annotation(1, 101, reader=1)))]
    bad = [
        store_event(sessions, created({**annotation(2, 102, reader=1), "result": "BI-RADS 3"})),
        store_event(sessions, created({**annotation(3, 102, reader=2), "id": "x"})),
        store_event(sessions, {"action": "ANNOTATION_UPDATED"}),
        store_event(sessions, created(annotation(4, 999, reader=1))),  # not our task
        store_event(
            sessions,
            created(
                {**annotation(5, 102, reader=3), "result": [{"from_name": "lesion", "value": 7}]}
            ),
        ),
    ]
    good.append(store_event(sessions, created(annotation(6, 103, reader=2))))
    good.append(
        store_event(sessions, {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}]})
    )
    good.append(store_event(sessions, created(annotation(7, 101, reader=3))))

    summary = sync(app, FakeStudio().as_studio(), PROJECT, reconcile=False)

    assert (summary.events, summary.events_set_aside) == (len(good), len(bad))
    assert set(_reviews(sessions)) == {6, 7}  # 1 was created, then deleted
    with sessions() as session:
        rows = {e.id: e for e in session.scalars(select(StudioEvent))}
        assert all(e.processed_at is not None for e in rows.values())
        assert [i for i, e in rows.items() if e.error] == bad
        newest = studio_queries.set_aside_studio_events(session, limit=10)
        assert studio_queries.count_set_aside_studio_events(session) == len(bad)
    reasons = {e.id: e.reason for e in newest}
    assert "result" in reasons[bad[0]] and "list" in reasons[bad[0]]
    assert "task 999 is not one of ours" in reasons[bad[3]]
    assert "value" in reasons[bad[4]]
    again = sync(app, FakeStudio().as_studio(), PROJECT, reconcile=False)
    assert (again.events, again.events_set_aside) == (0, 0)


def test_the_reconcile_skips_hostile_annotations_and_never_counts_them_deleted(
    app: AppContext, sessions: sessionmaker[Session]
) -> None:
    seed(sessions)
    store_event(sessions, created(annotation(5, 102, reader=1)))
    sync(app, FakeStudio().as_studio(), PROJECT, reconcile=False)
    assert set(_reviews(sessions)) == {5}
    studio = FakeStudio(
        tasks=[
            task(101, annotation(1, 101, reader=1), "a string", 42, None),
            task(102, {**annotation(5, 102, reader=1), "result": "garbage"}),
            task(103, {**annotation(6, 103, reader=1), "completed_by": {"id": 2}}),
            task("x"),
            task(104, {"id": 2**40}),
        ]
    )
    summary = sync(app, studio.as_studio(), PROJECT)
    assert summary.reconciled
    assert _reviews(sessions) == {
        1: "reader1@example.org",
        5: "reader1@example.org",  # still there: its annotation exists, it only did not parse
        6: "reader2@example.org",
    }
    assert summary.reviews_deleted == 0
    joined = "\n".join(summary.skipped)
    assert "annotation 5" in joined and "result" in joined and "a listed task" in joined


def test_deleted_annotations_go_in_the_reconcile(
    app: AppContext, sessions: sessionmaker[Session]
) -> None:
    seed(sessions)
    studio = FakeStudio(tasks=[task(101, annotation(1, 101, 1), annotation(2, 101, 2))])
    sync(app, studio.as_studio(), PROJECT)
    studio.tasks = [task(101, annotation(2, 101, 2))]
    summary = sync(app, studio.as_studio(), PROJECT)
    assert set(_reviews(sessions)) == {2} and summary.reviews_deleted == 1


def test_one_annotation_seen_by_webhook_and_reconcile_counts_once(
    app: AppContext, sessions: sessionmaker[Session]
) -> None:
    seed(sessions)
    ann = annotation(1, 101, reader=1)
    store_event(sessions, created(ann))
    store_event(sessions, {**created(ann), "action": "ANNOTATION_UPDATED"})
    summary = sync(app, FakeStudio(tasks=[task(101, ann)]).as_studio(), PROJECT)
    assert (summary.events, *_counts(summary)) == (2, 1, 0, 0, 0)


def _counts(summary: SyncSummary) -> tuple[int, int, int, int]:
    return (
        summary.reviews_new,
        summary.reviews_updated,
        summary.reviews_unchanged,
        summary.reviews_deleted,
    )


def _rejected(ann: dict[str, Any]) -> dict[str, Any]:
    """The same annotation after its reader changed the review choice to Reject."""
    choice = {"from_name": "review", "type": "choices", "value": {"choices": ["Reject"]}}
    return {**ann, "result": [*ann["result"][:1], choice]}


def test_one_annotation_counts_as_one_new_review_then_as_unchanged(
    app: AppContext, sessions: sessionmaker[Session]
) -> None:
    """Issue 15: the counts say what changed. One annotation, seen by its webhook event and by
    the reconcile, is one new review; the next sync changes nothing and must say so (it used to
    count the annotation as upserted again on every sync)."""
    seed(sessions)
    ann = annotation(1, 101, reader=1)
    store_event(sessions, created(ann))
    studio = FakeStudio(tasks=[task(101, ann)])
    first = sync(app, studio.as_studio(), PROJECT)
    assert (first.events, *_counts(first)) == (1, 1, 0, 0, 0)
    with sessions() as session:
        (written,) = session.scalars(select(Review)).all()
    second = sync(app, studio.as_studio(), PROJECT)
    assert (second.events, *_counts(second)) == (0, 0, 0, 1, 0)
    with sessions() as session:
        (kept,) = session.scalars(select(Review)).all()
    assert kept.updated_at == written.updated_at  # nothing was rewritten
    studio.tasks = [task(101, _rejected(ann))]
    store_event(sessions, {**created(_rejected(ann)), "action": "ANNOTATION_UPDATED"})
    third = sync(app, studio.as_studio(), PROJECT)
    assert (third.events, *_counts(third)) == (1, 0, 1, 0, 0)
    assert _counts(sync(app, studio.as_studio(), PROJECT)) == (0, 0, 1, 0)


def test_three_readers_accept_and_the_label_is_accepted_once(
    app: AppContext, sessions: sessionmaker[Session]
) -> None:
    tasks = seed(sessions)
    anns = [annotation(10 + r, 101, reader=r) for r in (1, 2, 3)]
    summary = sync(app, FakeStudio(tasks=[task(101, *anns)]).as_studio(), PROJECT)
    assert summary.labels == {LabelStatus.ACCEPTED.value: 1}
    with sessions() as session:
        label = label_queries.labels_by_image(session)[tasks[101]]
        first = label.decided_at
    sync(app, FakeStudio(tasks=[task(101, *anns)]).as_studio(), PROJECT)
    with sessions() as session:
        assert label_queries.labels_by_image(session)[tasks[101]].decided_at == first


def test_concurrent_syncs_all_finish_and_lose_nothing(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """The reported race: many syncs at once on one SQLite file (own engine and sessions each)."""
    seed(sessions)
    anns = {t: [annotation(t * 10 + r, t, reader=r) for r in (1, 2, 3)] for t in (101, 102, 103)}
    for group in anns.values():
        for ann in group:
            store_event(sessions, created(ann))
    studio = FakeStudio(tasks=[task(t, *group) for t, group in anns.items()])
    errors: list[BaseException] = []

    def one() -> None:
        try:
            sync(AppContext(settings), studio.as_studio(), PROJECT, wait_s=120)
        except BaseException as exc:  # every failure is the test's result
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert errors == []
    assert len(_reviews(sessions)) == 9
    with sessions() as session:
        assert label_queries.label_counts(session) == {LabelStatus.ACCEPTED.value: 3}
        waiting = select(func.count()).where(StudioEvent.processed_at.is_(None))
        assert session.scalar(waiting) == 0


def test_a_second_sync_waits_for_the_first_or_gives_up(
    app: AppContext, sessions: sessionmaker[Session], settings: Settings
) -> None:
    seed(sessions)
    lock = Path(settings.home) / LOCK_NAME
    studio = FakeStudio(tasks=[task(101, annotation(1, 101, reader=1))]).as_studio()
    with single_flight(lock), pytest.raises(AlreadyRunningError):
        sync(app, studio, PROJECT, wait_s=0)
    assert _reviews(sessions) == {}

    held = threading.Event()

    def hold() -> None:
        with single_flight(lock):
            held.set()
            time.sleep(0.6)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    started = time.monotonic()
    summary = sync(app, studio, PROJECT, wait_s=30)
    holder.join()
    assert time.monotonic() - started >= 0.4 and summary.reviews_new == 1


def test_an_unforeseen_error_sets_one_event_aside_and_the_rest_go_on(
    app: AppContext, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(sessions)
    real = parse_annotation

    def flaky(result: object, *, width: int, height: int) -> object:
        if isinstance(result, list) and len(result) == 1:
            raise RecursionError("maximum recursion depth exceeded")
        return real(result, width=width, height=height)

    monkeypatch.setattr("labeler.studio.sync.parse_annotation", flaky)
    one_region = {**annotation(1, 101, reader=1)}
    one_region["result"] = one_region["result"][:1]
    odd = store_event(sessions, created(one_region))
    store_event(sessions, created(annotation(2, 102, reader=1)))
    summary = sync(app, FakeStudio().as_studio(), PROJECT, reconcile=False)
    assert (summary.events, summary.events_set_aside) == (1, 1)
    assert set(_reviews(sessions)) == {2}
    with sessions() as session:
        (event,) = studio_queries.set_aside_studio_events(session)
    assert event.id == odd and event.reason.endswith("could not be applied (RecursionError)")


def test_a_failed_event_rolls_back_only_its_own_writes(
    app: AppContext, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each event in its own savepoint: what a failing event wrote is undone, nothing else."""
    seed(sessions)
    real = review_queries.upsert_review

    def write_then_fail(
        session: Session, *, review: review_queries.ReviewUpsert
    ) -> review_queries.ReviewChange:
        change = real(session, review=review)
        if review.ls_annotation_id == 2:
            raise ValueError("boom after writing")
        return change

    monkeypatch.setattr(review_queries, "upsert_review", write_then_fail)
    for ann_id, task_id in ((1, 101), (2, 102), (3, 103)):
        store_event(sessions, created(annotation(ann_id, task_id, reader=1)))
    summary = sync(app, FakeStudio().as_studio(), PROJECT, reconcile=False)
    assert (summary.events, summary.events_set_aside) == (2, 1)
    assert set(_reviews(sessions)) == {1, 3}  # 2's write was rolled back with its savepoint
    with sessions() as session:
        events = list(session.scalars(select(StudioEvent).order_by(StudioEvent.id)))
    assert [e.processed_at is not None for e in events] == [True] * 3
    assert [bool(e.error) for e in events] == [False, True, False]
