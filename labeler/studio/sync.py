"""Annotations -> reviews -> consensus labels, from stored webhooks and from a full reconcile.

Webhook events give low latency; the reconcile reads every task's annotations through the API,
so a webhook missed while the backend was down, or a Label Studio restart, loses nothing. Both
paths upsert by annotation id, so running sync twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from db import queries
from db.agreement import fleiss, pairwise_cohen
from db.models import Prediction, StudioTask, Verdict
from db.schemas import BoxRecord
from db.settings import Settings
from labeler.consensus import ConsensusRule, ReaderReview, boxes_agree, decide
from labeler.context import AppContext
from labeler.studio.client import Studio
from ml_backend.studio.format import (
    StudioFormatError,
    image_birads,
    parse_annotation,
    prelabel_rule,
)

log = logging.getLogger(__name__)
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")


@dataclass
class SyncSummary:
    events: int = 0
    reviews_upserted: int = 0
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


def sync(
    app: AppContext, studio: Studio, project_id: int, *, reconcile: bool = True
) -> SyncSummary:
    summary = SyncSummary()
    readers = _readers(studio)
    touched: set[tuple[int, int]] = set()
    touched |= _process_events(app, readers, summary)
    if reconcile:
        touched |= _reconcile(app, studio, project_id, readers, summary)
        summary.reconciled = True
    rule = ConsensusRule(app.settings.consensus_quorum, app.settings.consensus_iou)
    with app.sessions.begin() as session:
        for image_id, round_ in sorted(touched):
            _decide(session, image_id, round_, rule, app.settings)
        summary.labels = queries.label_counts(session)
    return summary


def agreement(app: AppContext) -> list[RoundAgreement]:
    """Fleiss' kappa over images read by exactly the quorum, Cohen's kappa per reader pair."""
    out = []
    with app.sessions() as session:
        for round_ in queries.review_rounds(session):
            ratings = queries.round_ratings(session, round=round_)
            full = [r for r in ratings.values() if len(r) == app.settings.consensus_quorum]
            rows = [[r[k] for k in sorted(r)] for r in full]
            by_reader: dict[str, dict[int, Any]] = {}
            for image_id, per in ratings.items():
                for reader, birads in per.items():
                    by_reader.setdefault(reader, {})[image_id] = birads
            kappa = fleiss(rows) if rows else None
            out.append(RoundAgreement(round_, len(full), kappa, pairwise_cohen(by_reader)))
    return out


def _readers(studio: Studio) -> dict[int, str]:
    users: list[Any] = studio.call(lambda: list(studio.sdk.users.list()))
    return {int(u.id): str(u.email) for u in users if u.id is not None}


def _process_events(
    app: AppContext, readers: dict[int, str], summary: SyncSummary
) -> set[tuple[int, int]]:
    touched: set[tuple[int, int]] = set()
    with app.sessions.begin() as session:
        events = queries.unprocessed_studio_events(session, actions=ANNOTATION_ACTIONS)
        for event in events:
            payload = event.payload
            if event.action == "ANNOTATIONS_DELETED":
                ids = [a["id"] for a in payload.get("annotations") or [] if "id" in a]
                gone = queries.delete_reviews(session, ls_annotation_ids=ids)
                summary.reviews_deleted += len(gone)
                touched |= set(gone)
            else:
                annotation = payload.get("annotation") or {}
                key = _apply(session, annotation, readers, summary, app.settings)
                if key is not None:
                    touched.add(key)
        queries.mark_studio_events_processed(session, ids=[e.id for e in events])
        summary.events = len(events)
    return touched


def _reconcile(
    app: AppContext, studio: Studio, project_id: int, readers: dict[int, str], summary: SyncSummary
) -> set[tuple[int, int]]:
    tasks: list[Any] = studio.call(
        lambda: list(studio.sdk.tasks.list(project=project_id, fields="all", page_size=1000))
    )
    touched: set[tuple[int, int]] = set()
    with app.sessions.begin() as session:
        seen: set[int] = set()
        for task in tasks:
            for annotation in task.annotations or []:
                ann = annotation if isinstance(annotation, dict) else annotation.dict()
                ann.setdefault("task", task.id)
                key = _apply(session, ann, readers, summary, app.settings)
                if key is not None:
                    touched.add(key)
                    seen.add(int(ann["id"]))
        task_ids = [int(t.id) for t in tasks if t.id is not None]
        missing = queries.review_annotation_ids(session, ls_task_ids=task_ids) - seen
        gone = queries.delete_reviews(session, ls_annotation_ids=missing)
        summary.reviews_deleted += len(gone)
        touched |= set(gone)
    return touched


def _apply(
    session: Session,
    ann: dict[str, Any],
    readers: dict[int, str],
    summary: SyncSummary,
    settings: Settings,
) -> tuple[int, int] | None:
    """Upsert one annotation as a review; returns the (image, round) it belongs to."""
    ann_id, task_id = ann.get("id"), ann.get("task")
    task = queries.studio_task(session, ls_task_id=task_id) if isinstance(task_id, int) else None
    if not isinstance(ann_id, int) or task is None:
        summary.skipped.append(f"annotation {ann_id}: task {task_id} is not one of ours")
        return None
    if ann.get("was_cancelled"):
        gone = queries.delete_reviews(session, ls_annotation_ids=[ann_id])
        return (task.image_id, task.round) if gone else None
    image = queries.image_by_id(session, image_id=task.image_id)
    assert image is not None
    try:
        parsed = parse_annotation(ann.get("result") or [], width=image.width, height=image.height)
    except StudioFormatError as exc:
        summary.skipped.append(f"annotation {ann_id}: {exc}")
        return None
    prediction = _prelabel(session, task)
    verdict = parsed.verdict or _implied_verdict(parsed.boxes, prediction, settings)
    reader = readers.get(_user_id(ann.get("completed_by")), f"user-{ann.get('completed_by')}")
    queries.upsert_review(
        session,
        review=queries.ReviewUpsert(
            image_id=task.image_id,
            reader=reader,
            round=task.round,
            verdict=verdict,
            boxes=parsed.boxes,
            image_birads=parsed.image_birads,
            pathology=parsed.pathology,
            prediction_id=prediction.id if prediction else None,
            ls_annotation_id=ann_id,
            ls_task_id=task.ls_task_id,
        ),
    )
    summary.reviews_upserted += 1
    return (task.image_id, task.round)


def _decide(
    session: Session, image_id: int, round_: int, rule: ConsensusRule, settings: Settings
) -> None:
    reviews = queries.reviews_for(session, image_id=image_id, round=round_)
    task = next(
        (
            t
            for t in queries.studio_tasks_for(session, image_id=image_id, round=round_)
            if t.model_version_id is not None
        ),
        None,
    )
    prediction = _prelabel(session, task) if task else None
    if prediction is None:
        log.warning("image %s round %s: no pre-label on record; left pending", image_id, round_)
        return
    readings = [ReaderReview(r.reader, r.verdict, tuple(r.boxes), r.image_birads) for r in reviews]
    shown = prelabel_rule(settings).shown(prediction.boxes)
    decision = decide(shown, image_birads(shown), readings, rule)
    queries.upsert_label(
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
    return queries.cached_prediction(
        session, image_id=task.image_id, model_version_id=task.model_version_id
    )


def _implied_verdict(
    boxes: tuple[BoxRecord, ...], prediction: Prediction | None, settings: Settings
) -> Verdict:
    """No review choice made: the boxes say whether the reader changed the pre-label."""
    if prediction is None:
        return Verdict.CORRECT
    shown = prelabel_rule(settings).shown(prediction.boxes)
    if boxes_agree(boxes, shown, iou=settings.consensus_iou):
        return Verdict.ACCEPT
    return Verdict.CORRECT


def _user_id(value: Any) -> int:
    if isinstance(value, dict):
        value = value.get("id")
    return int(value) if isinstance(value, int) else -1
