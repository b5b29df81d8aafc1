"""Put pre-labeled images in front of the readers: one task per (image, round), in bulk.

Each new task arrives with its prediction embedded, so readers see the pre-label at once; tasks
that exist but carry an older model version get the new prediction through the bulk
predictions import. Task ids are read back from the project by our `image_id` / `round` fields,
so a push interrupted between Label Studio and our database is repaired by the next push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from core.settings import Settings
from db.lesion_boxes import top_box
from db.models import Prediction
from db.queries import images as image_queries
from db.queries import studio as studio_queries
from db.queries import versions as version_queries
from labeler import queue as review_queue
from labeler.context import AppContext
from labeler.jobs.samples import load_rgb
from labeler.studio.client import Studio
from ml_backend.active import PoolImage, by_name, rank
from ml_backend.detector.interface import Detection, ImagePrediction
from ml_backend.encoder.similar import SimilarLesions
from ml_backend.registry.kinds import ENCODER_KIND
from ml_backend.studio import schema
from ml_backend.studio.events import listed_task
from ml_backend.studio.format import prediction_payload, prelabel_rule
from ml_backend.studio.similar import declares_similar, similar_region

log = logging.getLogger(__name__)
Regions = dict[int, schema.TextAreaRegion]  # image id -> the read-only "similar lesions" result

BATCH = 500


@dataclass(frozen=True)
class PushSummary:
    model_version: str
    tasks_created: int
    predictions_updated: int
    already_current: int


def local_files_url(png_path: str) -> str:
    """What Label Studio serves from its document root (LABELER_HOME)."""
    return f"/data/local-files/?d={png_path}"


def push(
    app: AppContext,
    studio: Studio,
    project_id: int,
    *,
    model_version: str,
    advance: Callable[[int], None] | None = None,
) -> PushSummary:
    with app.sessions() as session:
        items = review_queue.review_items(session, model_version_id=model_version)
    order = queue_order(items, app.settings.al_strategy)
    regions = similar_regions(app, studio, project_id, items)
    known = sync_task_ids(app, studio, project_id)
    new = sorted(
        (i for i in items if (i.image_id, i.round) not in known),
        key=lambda i: order.get(i.image_id, len(order)),
    )  # sequential sampling serves by task id: import in queue order
    stale = [
        (known[(i.image_id, i.round)], i)
        for i in items
        if (i.image_id, i.round) in known and known[(i.image_id, i.round)][1] != model_version
    ]
    for start in range(0, len(new), BATCH):
        batch = new[start : start + BATCH]
        tasks = [_task(i, model_version, app.settings, order, regions) for i in batch]
        _import_tasks(studio, project_id, tasks)
        if advance:
            advance(len(batch))
    if stale:
        _update_predictions(app, studio, project_id, stale, model_version, regions)
    sync_task_ids(app, studio, project_id)
    return PushSummary(model_version, len(new), len(stale), len(items) - len(new) - len(stale))


def sync_task_ids(
    app: AppContext, studio: Studio, project_id: int
) -> dict[tuple[int, int], tuple[int, str | None]]:
    """(image id, round) -> (task id, model version) for every task of ours in the project."""
    tasks: list[Any] = studio.call(
        lambda: list(studio.sdk.tasks.list(project=project_id, fields="all", page_size=1000))
    )
    out: dict[tuple[int, int], tuple[int, str | None]] = {}
    with app.sessions.begin() as session:
        rows = {
            t.ls_task_id: t for t in studio_queries.studio_tasks(session, ls_project_id=project_id)
        }
        for item in tasks:
            task = listed_task(item)
            if task is None:  # not one of ours
                continue
            data = task.data
            row = rows.get(task.id)
            if (
                row is None
                and image_queries.image_by_id(session, image_id=data.image_id) is not None
            ):
                row = studio_queries.add_studio_task(
                    session,
                    image_id=data.image_id,
                    round=data.round,
                    ls_project_id=project_id,
                    ls_task_id=task.id,
                    model_version_id=data.model_version,
                )
            if row is not None:
                out[(row.image_id, row.round)] = (row.ls_task_id, row.model_version_id)
    return out


def queue_order(items: Sequence[review_queue.ReviewItem], strategy: str) -> dict[int, int]:
    """Image id -> queue position (0 first) from a query strategy on the stored predictions.

    The position goes into the task's `data.queue_rank`, which the project's "Queue" tab sorts
    by (labeler.studio.project); the prediction score stays the deciding box's probability.
    """
    pool = [
        PoolImage(image_id=i.image_id, prediction=_as_prediction(i.prediction), width=i.width)
        for i in items
    ]
    ranked = rank(by_name(strategy), pool) if pool else []
    return {image_id: position for position, image_id in enumerate(ranked)}


def similar_regions(
    app: AppContext, studio: Studio, project_id: int, items: Sequence[review_queue.ReviewItem]
) -> Regions:
    """The similar confirmed lesions of each item's top shown box, as the backend's /predict
    adds them; empty without an active encoder and index, or for a project whose label config
    lacks the `similar` TextArea (Label Studio would refuse the whole prediction)."""
    with app.sessions() as session:
        encoder = version_queries.active_model_id(session, kind=ENCODER_KIND)
    if encoder is None or not items:
        return {}
    config = studio.call(lambda: studio.sdk.projects.get(id=project_id).label_config)
    if not declares_similar(config):
        return {}
    finder = SimilarLesions(app.settings, app.sessions)
    rule = prelabel_rule(app.settings)
    out: Regions = {}
    for item in items:
        try:
            found = finder.find(
                image_id=item.image_id,
                box=top_box(rule.pick(item.prediction.boxes)),
                pixels=partial(load_rgb, app.settings.home, item.png_path),
            )
        except Exception:  # the pre-label matters more than its second opinion
            log.exception("similar lesions failed for image %s; pushed without", item.image_id)
            continue
        if found is not None:
            out[item.image_id] = similar_region(
                found.matches, encoder_version=found.encoder_version
            )
    return out


def _as_prediction(row: Prediction) -> ImagePrediction:
    detections = tuple(
        Detection(b.xyxy, b.birads, float(b.score or 0.0), dict(b.probs or {}))
        for b in row.boxes
        if b.birads is not None
    )
    return ImagePrediction(detections, row.uncertainty)


def _task(
    item: review_queue.ReviewItem,
    model_version: str,
    settings: Settings,
    order: dict[int, int],
    regions: Regions,
) -> schema.NewTask:
    position = order.get(item.image_id, len(order))
    return schema.NewTask(
        data=schema.TaskData(
            image=local_files_url(item.png_path),
            image_id=item.image_id,
            round=item.round,
            model_version=model_version,
            queue_rank=position,
        ),
        predictions=[_prediction(item, model_version, settings, regions)],
    )


def _prediction(
    item: review_queue.ReviewItem,
    model_version: str,
    settings: Settings,
    regions: Regions,
) -> schema.Prediction:
    prediction = prediction_payload(
        item.prediction.boxes,
        width=item.width,
        height=item.height,
        model_version=model_version,
        rule=prelabel_rule(settings),
    )
    region = regions.get(item.image_id)
    return prediction.with_region(region) if region is not None else prediction


def _update_predictions(
    app: AppContext,
    studio: Studio,
    project_id: int,
    stale: Sequence[tuple[tuple[int, str | None], review_queue.ReviewItem]],
    model_version: str,
    regions: Regions,
) -> None:
    payload = [
        _prediction(item, model_version, app.settings, regions).for_task(task_id)
        for (task_id, _), item in stale
    ]
    for start in range(0, len(payload), BATCH):
        chunk = payload[start : start + BATCH]
        _import_predictions(studio, project_id, chunk)
    with app.sessions.begin() as session:
        for (task_id, _), _item in stale:
            studio_queries.set_studio_task_version(
                session, ls_task_id=task_id, model_version_id=model_version
            )


def _import_tasks(studio: Studio, project_id: int, tasks: Sequence[schema.NewTask]) -> None:
    body = [t.body() for t in tasks]
    studio.call(lambda: studio.sdk.projects.import_tasks(project_id, request=cast(Any, body)))


def _import_predictions(
    studio: Studio, project_id: int, chunk: Sequence[schema.PredictionImport]
) -> None:
    body = [p.body() for p in chunk]
    studio.call(lambda: studio.sdk.projects.import_predictions(project_id, request=cast(Any, body)))
