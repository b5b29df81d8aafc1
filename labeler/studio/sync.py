"""Annotations -> reviews -> consensus labels, from stored webhooks and from a full reconcile.

Webhook events give low latency; the reconcile reads every task's annotations through the API,
so a webhook missed while the backend was down, or a Label Studio restart, loses nothing. Both
paths upsert by annotation id, so running sync twice changes nothing the second time.

The summary counts each annotation once, by what this run did to its review as a whole: new (no
review before the run), updated, or unchanged; a webhook event and the reconcile seeing the same
annotation, or a second sync, never count it twice or as changed.

Robust to what arrives from outside: each stored event is validated into
`ml_backend.studio.events.WebhookEvent` and applied in its own transaction (claimed first, applied
in a savepoint); one that cannot be applied is set aside (`StudioEvent.error` holds the reason,
shown by `labeler studio status` and the dashboard) and the others go on. An annotation of the
reconcile that does not fit is skipped with its reason and never counts as deleted.

Single-flight: one sync at a time per LABELER_HOME (`sync.lock`); a second one waits for it
(up to `wait_s`) and then runs, or gives up with AlreadyRunningError (exit code 4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from core.settings import Settings
from db.agreement import fleiss_over, pairwise_cohen
from db.models import Prediction, StudioTask, Verdict
from db.queries import images as image_queries
from db.queries import labels as label_queries
from db.queries import predictions as prediction_queries
from db.queries import reviews as review_queries
from db.queries import studio as studio_queries
from db.queries.reviews import ReviewChange
from db.schemas import BoxRecord
from labeler.consensus import ConsensusRule, ReaderReview, boxes_agree, decide
from labeler.context import AppContext
from labeler.lock import wait_for_lock
from labeler.studio.client import Studio
from ml_backend.studio.events import (
    ANNOTATION_ACTIONS,
    MAX_ID,
    Annotation,
    WebhookEvent,
    plain,
    reason,
)
from ml_backend.studio.format import (
    StudioFormatError,
    image_birads,
    parse_annotation,
    prelabel_rule,
)

log = logging.getLogger(__name__)
LOCK_NAME = "sync.lock"
DEFAULT_WAIT_S = 300.0
# an annotation applied more than once in a run (webhook events, the reconcile) counts once:
# new if its review was new to any of them, else updated if any changed it, else unchanged
_NET = {ReviewChange.UNCHANGED: 0, ReviewChange.UPDATED: 1, ReviewChange.NEW: 2}


class NotApplicableError(Exception):
    """This event or annotation cannot be applied; the message says why (one line)."""


@dataclass
class SyncSummary:
    events: int = 0  # webhook events applied
    events_set_aside: int = 0  # webhook events that could not be applied (reasons in skipped)
    reviews_new: int = 0  # annotations whose review did not exist before this run
    reviews_updated: int = 0  # reviews this run changed (and that existed before it)
    reviews_unchanged: int = 0  # annotations seen whose review already said the same
    reviews_deleted: int = 0
    skipped: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    reconciled: bool = False


@dataclass(frozen=True)
class RoundAgreement:
    round: int
    images: int
    fleiss: float | None
    cohen: dict[str, float | None]


@dataclass
class _Run:
    """One sync's state: who the readers are and what it changed so far."""

    readers: dict[int, str]
    settings: Settings
    summary: SyncSummary = field(default_factory=SyncSummary)
    touched: set[tuple[int, int]] = field(default_factory=set)
    changes: dict[int, ReviewChange] = field(default_factory=dict)  # by annotation id

    def skip(self, what: str, why: str) -> None:
        self.summary.skipped.append(f"{what}: {why}")


@dataclass(frozen=True)
class _Outcome:
    touched: frozenset[tuple[int, int]] = frozenset()
    written: tuple[int, ReviewChange] | None = None  # (annotation id, what its upsert did)
    deleted: int = 0


def sync(
    app: AppContext,
    studio: Studio,
    project_id: int,
    *,
    reconcile: bool = True,
    wait_s: float = DEFAULT_WAIT_S,
) -> SyncSummary:
    """Apply waiting webhook events, then (reconcile) every annotation, then decide consensus."""
    with wait_for_lock(app.settings.home / LOCK_NAME, wait_s):
        run = _Run(_readers(studio), app.settings)
        _process_events(app, run)
        if reconcile:
            _reconcile(app, studio, project_id, run)
            run.summary.reconciled = True
        rule = ConsensusRule(app.settings.consensus_quorum, app.settings.consensus_iou)
        for image_id, round_ in sorted(run.touched):
            with app.sessions.begin() as session:
                _decide(session, image_id, round_, rule, app.settings)
        with app.sessions() as session:
            run.summary.labels = label_queries.label_counts(session)
        _count_changes(run)
        return run.summary


def agreement(app: AppContext) -> list[RoundAgreement]:
    """Fleiss' kappa over images read by exactly the quorum, Cohen's kappa per reader pair."""
    out = []
    with app.sessions() as session:
        for round_ in review_queries.review_rounds(session):
            ratings = review_queries.round_ratings(session, round=round_)
            quorum = fleiss_over(ratings.values(), readers=app.settings.consensus_quorum)
            by_reader: dict[str, dict[int, Any]] = {}
            for image_id, per in ratings.items():
                for reader, birads in per.items():
                    by_reader.setdefault(reader, {})[image_id] = birads
            cohen = pairwise_cohen(by_reader)
            out.append(RoundAgreement(round_, quorum.images, quorum.kappa, cohen))
    return out


def _readers(studio: Studio) -> dict[int, str]:
    users: list[Any] = studio.call(lambda: list(studio.sdk.users.list()))
    return {
        int(u.id): str(u.email)
        for u in users
        if isinstance(getattr(u, "id", None), int) and isinstance(getattr(u, "email", None), str)
    }


def _process_events(app: AppContext, run: _Run) -> None:
    with app.sessions() as session:
        ids = studio_queries.unprocessed_studio_event_ids(session, actions=ANNOTATION_ACTIONS)
    for event_id in ids:
        _process_event(app, run, event_id)


def _process_event(app: AppContext, run: _Run, event_id: int) -> None:
    """Claim, apply in a savepoint, or set aside with the reason: one transaction per event."""
    with app.sessions.begin() as session:
        row = studio_queries.claim_studio_event(session, event_id=event_id)
        if row is None:
            return
        try:
            with _not_applicable(), session.begin_nested():
                outcome = _apply_event(session, row.payload, run)
        except NotApplicableError as exc:
            why = _clean(str(exc))
            studio_queries.set_aside_studio_event(session, event_id=event_id, reason=why)
            run.summary.events_set_aside += 1
            run.skip(f"event {event_id} set aside", why)
            return
        run.summary.events += 1
        _merge(run, outcome)


def _apply_event(session: Session, payload: object, run: _Run) -> _Outcome:
    try:
        event = WebhookEvent.model_validate(payload)
    except ValidationError as exc:
        raise NotApplicableError(f"not a valid event ({reason(exc)})") from None
    if event.action == "ANNOTATIONS_DELETED":
        ids = [a.id for a in event.annotations or []]
        gone = review_queries.delete_reviews(session, ls_annotation_ids=ids)
        return _Outcome(touched=frozenset(gone), deleted=len(gone))
    annotation = event.annotation
    assert annotation is not None  # the model requires one for the other actions
    if annotation.task is None and event.task_id is not None:
        annotation = annotation.model_copy(update={"task": event.task_id})
    return _apply(session, annotation, run)


def _reconcile(app: AppContext, studio: Studio, project_id: int, run: _Run) -> None:
    """Every annotation of every task, each in its own transaction; then remove the reviews whose
    annotations are gone (only for tasks whose annotation list could be read whole)."""
    tasks: list[Any] = studio.call(
        lambda: list(studio.sdk.tasks.list(project=project_id, fields="all", page_size=1000))
    )
    seen: set[int] = set()
    whole: list[int] = []
    for task in tasks:
        task_id, annotations = getattr(task, "id", None), getattr(task, "annotations", None)
        if not _is_id(task_id):
            run.skip("a listed task", "no valid id")
            continue
        annotations = [] if annotations is None else annotations
        if not isinstance(annotations, list):
            run.skip(f"task {task_id}", "its annotations are not a list")
            continue
        ids = [_id_in(plain(a)) for a in annotations]
        seen |= {i for i in ids if _is_id(i)}
        if all(_is_id(i) for i in ids):
            whole.append(task_id)
        for item in annotations:
            _reconcile_one(app, run, task_id, plain(item))
    with app.sessions.begin() as session:
        missing = review_queries.review_annotation_ids(session, ls_task_ids=whole) - seen
        gone = review_queries.delete_reviews(session, ls_annotation_ids=missing)
    _merge(run, _Outcome(touched=frozenset(gone), deleted=len(gone)))


def _reconcile_one(app: AppContext, run: _Run, task_id: int, data: object) -> None:
    what = f"annotation {data.get('id')}" if isinstance(data, dict) else f"task {task_id}"
    try:
        with _not_applicable():
            if isinstance(data, dict) and data.get("task") is None:
                data = {**data, "task": task_id}
            try:
                annotation = Annotation.model_validate(data)
            except ValidationError as exc:
                raise NotApplicableError(f"not a valid annotation ({reason(exc)})") from None
            with app.sessions.begin() as session:
                outcome = _apply(session, annotation, run)
    except NotApplicableError as exc:
        run.skip(_clean(what), _clean(str(exc)))
        return
    _merge(run, outcome)


def _apply(session: Session, ann: Annotation, run: _Run) -> _Outcome:
    """Upsert one annotation as a review; NotApplicableError when it cannot be."""
    task = None if ann.task is None else studio_queries.studio_task(session, ls_task_id=ann.task)
    if task is None:
        raise NotApplicableError(f"annotation {ann.id}: task {ann.task} is not one of ours")
    if ann.was_cancelled:
        gone = review_queries.delete_reviews(session, ls_annotation_ids=[ann.id])
        return _Outcome(touched=frozenset(gone), deleted=len(gone))
    if ann.completed_by is None:
        raise NotApplicableError(f"annotation {ann.id}: no reader (completed_by)")
    image = image_queries.image_by_id(session, image_id=task.image_id)
    if image is None:
        raise NotApplicableError(f"annotation {ann.id}: its image is gone")
    try:
        parsed = parse_annotation(ann.regions(), width=image.width, height=image.height)
    except StudioFormatError as exc:
        raise NotApplicableError(f"annotation {ann.id}: {exc}") from None
    prediction = _prelabel(session, task)
    verdict = parsed.verdict or _implied_verdict(parsed.boxes, prediction, run.settings)
    change = review_queries.upsert_review(
        session,
        review=review_queries.ReviewUpsert(
            image_id=task.image_id,
            reader=run.readers.get(ann.completed_by, f"user-{ann.completed_by}"),
            round=task.round,
            verdict=verdict,
            boxes=parsed.boxes,
            image_birads=parsed.image_birads,
            pathology=parsed.pathology,
            prediction_id=prediction.id if prediction else None,
            ls_annotation_id=ann.id,
            ls_task_id=task.ls_task_id,
        ),
    )
    return _Outcome(touched=frozenset({(task.image_id, task.round)}), written=(ann.id, change))


@contextmanager
def _not_applicable() -> Iterator[None]:
    """Failures that belong to the data of one event or annotation become NotApplicableError.

    A constraint or value the database refuses is such a failure, and so is any other error
    while applying it (logged with its traceback); a database that is locked, full or
    unreachable is not (it propagates, and the event waits for the next sync).
    """
    try:
        yield
    except NotApplicableError:
        raise
    except (IntegrityError, DataError) as exc:
        raise NotApplicableError(f"the database refused it ({type(exc.orig).__name__})") from None
    except SQLAlchemyError:
        raise
    except Exception as exc:  # a shape nobody foresaw: set aside, keep the traceback in the log
        log.warning("could not apply a Label Studio annotation", exc_info=True)
        raise NotApplicableError(f"could not be applied ({type(exc).__name__})") from None


def _merge(run: _Run, outcome: _Outcome) -> None:
    run.touched |= outcome.touched
    run.summary.reviews_deleted += outcome.deleted
    if outcome.written is not None:
        annotation_id, change = outcome.written
        seen = run.changes.get(annotation_id, change)
        run.changes[annotation_id] = max(seen, change, key=_NET.__getitem__)


def _count_changes(run: _Run) -> None:
    changes = list(run.changes.values())
    run.summary.reviews_new = changes.count(ReviewChange.NEW)
    run.summary.reviews_updated = changes.count(ReviewChange.UPDATED)
    run.summary.reviews_unchanged = changes.count(ReviewChange.UNCHANGED)


def _id_in(data: object) -> object:
    return data.get("id") if isinstance(data, dict) else None


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _clean(text: str, limit: int = 300) -> str:
    """One ASCII line of bounded length: stored as the reason and printed by status."""
    text = " ".join(text.split()).encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decide(
    session: Session, image_id: int, round_: int, rule: ConsensusRule, settings: Settings
) -> None:
    reviews = review_queries.reviews_for(session, image_id=image_id, round=round_)
    task = next(
        (
            t
            for t in studio_queries.studio_tasks_for(session, image_id=image_id, round=round_)
            if t.model_version_id is not None
        ),
        None,
    )
    prediction = _prelabel(session, task) if task else None
    if prediction is None:
        log.warning("image %s round %s: no pre-label on record; left pending", image_id, round_)
        return
    readings = [ReaderReview(r.reader, r.verdict, tuple(r.boxes), r.image_birads) for r in reviews]
    shown = prelabel_rule(settings).pick(prediction.boxes)
    decision = decide(shown, image_birads(shown), readings, rule)
    label_queries.upsert_label(
        session,
        image_id=image_id,
        round=round_,
        status=decision.status,
        boxes=decision.boxes,
        birads=decision.birads,
        model_version_id=prediction.model_version_id,
    )


def _prelabel(session: Session, task: StudioTask) -> Prediction | None:
    if task.model_version_id is None:
        return None
    return prediction_queries.cached_prediction(
        session, image_id=task.image_id, model_version_id=task.model_version_id
    )


def _implied_verdict(
    boxes: tuple[BoxRecord, ...], prediction: Prediction | None, settings: Settings
) -> Verdict:
    """No review choice made: the boxes say whether the reader changed the pre-label."""
    if prediction is None:
        return Verdict.CORRECT
    shown = prelabel_rule(settings).pick(prediction.boxes)
    if boxes_agree(boxes, shown, iou=settings.consensus_iou):
        return Verdict.ACCEPT
    return Verdict.CORRECT
