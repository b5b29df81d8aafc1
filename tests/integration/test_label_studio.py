"""The review loop against a real Label Studio: bootstrap, pre-labels, three readers, sync.

Tests run in file order on one Label Studio (module state is the point: a project that readers
annotate step by step).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bench.support.factories import KNOWN_MALIGNANCY, add_prelabels
from core.birads import Birads
from db.agreement import fleiss
from db.queries import images as image_queries
from db.queries import labels as label_queries
from db.queries import predictions as prediction_queries
from db.queries import studio as studio_queries
from labeler import queue as review_queue
from labeler.studio.project import QUEUE_ORDERING, QUEUE_VIEW, ensure_project
from labeler.studio.push import push
from labeler.studio.sync import agreement, sync
from tests.integration.conftest import Stack
from tests.ml_backend.prelabel.fakes import splitting_pipeline

ACCEPT, CORRECTED, REJECT = "Pre-label correct", "Corrected", "Reject"


def _tasks(stack: Stack) -> list[dict[str, Any]]:
    with stack.studio.http() as c:
        body = (
            c.get(
                "/api/tasks",
                params={"project": stack.project.id, "fields": "all", "page_size": 500},
            )
            .raise_for_status()
            .json()
        )
    tasks: list[dict[str, Any]] = body["tasks"] if isinstance(body, dict) else body
    return sorted(tasks, key=lambda t: t["id"])


def _annotate(
    stack: Stack, reader: int, task: dict[str, Any], choice: str, label: str | None = None
) -> None:
    regions = [dict(r) for r in task["predictions"][0]["result"]]
    for r in regions:
        r.pop("score", None)
        if label is not None:
            r["value"] = {**r["value"], "rectanglelabels": [label]}
    result = [
        *regions,
        {
            "from_name": "review",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": [choice]},
        },
    ]
    token = stack.readers[reader].token
    response = httpx.post(
        f"{stack.studio.url}/api/tasks/{task['id']}/annotations/",
        headers={"Authorization": f"Token {token}"},
        json={"result": result, "lead_time": 3.0},
        timeout=30,
    )
    assert response.status_code == 201, response.text


def test_project_bootstrap_is_idempotent(stack: Stack) -> None:
    again = ensure_project(stack.studio, stack.settings)
    assert again.id == stack.project.id and stack.project.created and not again.created
    with stack.studio.http() as c:
        project = c.get(f"/api/projects/{stack.project.id}").json()
        backends = c.get("/api/ml", params={"project": stack.project.id}).json()
        hooks = c.get("/api/webhooks", params={"project": stack.project.id}).json()
    assert project["maximum_annotations"] == 3 and project["overlap_cohort_percentage"] == 100
    assert (
        "BI-RADS 4A" in project["label_config"] and "Pre-label correct" in project["label_config"]
    )
    assert project["label_config"].strip() == _config(stack).strip()  # `labeler studio config`
    assert project["sampling"] == "Sequential sampling"
    with stack.studio.http() as c:
        views = c.get("/api/dm/views", params={"project": stack.project.id}).json()
    queue = [v for v in views if v["data"].get("title") == QUEUE_VIEW]
    assert len(queue) == 1 and queue[0]["data"]["ordering"] == QUEUE_ORDERING
    assert [b["url"] for b in backends] == [stack.settings.backend_url]
    assert backends[0]["state"] == "CO", backends[0]
    assert f"{stack.settings.backend_url}/webhook" in [h["url"] for h in hooks]
    assert len({r.token for r in stack.readers}) == 3


def test_bulk_push_shows_prelabels_at_once_and_twice_adds_nothing(stack: Stack) -> None:
    first = push(stack.app, stack.studio, stack.project.id, model_version=stack.version)
    with stack.sessions() as session:
        expected = len(review_queue.review_items(session, model_version_id=stack.version))
    assert first.tasks_created == expected > 0
    tasks = _tasks(stack)
    assert len(tasks) == expected
    for task in tasks:
        (pred,) = task["predictions"]
        assert pred["model_version"] == stack.version
        assert pred["result"][0]["value"]["rectanglelabels"] == ["BI-RADS 4A"]
        assert pred["score"] == KNOWN_MALIGNANCY[Birads.B4A]  # P(malignant), not a queue rank
    ranks = sorted(t["data"]["queue_rank"] for t in tasks)
    assert ranks == list(range(expected))
    again = push(stack.app, stack.studio, stack.project.id, model_version=stack.version)
    assert again.tasks_created == 0 and again.already_current == expected


def test_retrieve_predictions_asks_our_backend(stack: Stack) -> None:
    """Tasks imported without predictions get them from /predict (cache hit and miss)."""
    with stack.sessions() as session:
        test_ids = [
            i
            for i, _ in prediction_queries.images_without_prediction(
                session, model_version_id=stack.version
            )
        ][:2]
        paths = [image_queries.image_by_id(session, image_id=i).png_path for i in test_ids]  # type: ignore[union-attr]
        before = prediction_queries.count_predictions(session, model_version_id=stack.version)
    add_prelabels(stack.sessions, stack.version, test_ids[:1], Birads.B5)  # a cached one
    other = stack.settings.studio_project + " (retrieve)"
    with stack.studio.http() as c:
        new = c.post("/api/projects", json={"title": other, "label_config": _config(stack)}).json()
        c.post(
            "/api/ml", json={"url": stack.settings.backend_url, "project": new["id"]}
        ).raise_for_status()
        c.post(
            f"/api/projects/{new['id']}/import",
            json=[{"image": f"/data/local-files/?d={p}"} for p in paths],
        ).raise_for_status()
        ids = [t["id"] for t in c.get("/api/tasks", params={"project": new["id"]}).json()["tasks"]]
        c.post(
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": new["id"]},
            json={"selectedItems": {"all": True, "excluded": []}},
            timeout=120,
        ).raise_for_status()
        preds = {i: c.get("/api/predictions", params={"task": i}).json() for i in ids}
    assert all(len(p) == 1 and p[0]["model_version"] == stack.version for p in preds.values())
    cached = preds[min(ids)][0]["result"]
    assert cached[0]["value"]["rectanglelabels"] == ["BI-RADS 5"]
    with stack.sessions() as session:  # the miss was computed once and stored
        assert (
            prediction_queries.count_predictions(session, model_version_id=stack.version)
            == before + 2
        )


def _config(stack: Stack) -> str:
    from ml_backend.studio.format import label_config

    return label_config()


def test_three_readers_and_sync_give_statuses_and_kappa(stack: Stack) -> None:
    a, b, c, d = _tasks(stack)[:4]
    for reader in range(3):
        _annotate(stack, reader, a, ACCEPT)
    _annotate(stack, 0, b, ACCEPT)
    _annotate(stack, 1, b, ACCEPT)
    _annotate(stack, 2, b, REJECT)
    _annotate(stack, 0, c, ACCEPT)
    _annotate(stack, 1, c, ACCEPT)
    _annotate(stack, 0, d, ACCEPT)
    _annotate(stack, 1, d, ACCEPT)
    _annotate(stack, 2, d, CORRECTED, label="BI-RADS 5")
    with stack.sessions() as session:
        waiting = studio_queries.count_studio_events(
            session, action="ANNOTATION_CREATED", processed=False
        )
    assert waiting == 11  # every annotation reached the webhook

    summary = sync(stack.app, stack.studio, stack.project.id)
    assert summary.events == 11 and not summary.skipped
    status = _statuses(stack)
    assert status[a["data"]["image_id"]] == "accepted"
    assert status[b["data"]["image_id"]] == "rejected"
    assert status[c["data"]["image_id"]] == "pending"
    assert status[d["data"]["image_id"]] == "rejected"
    (round1,) = agreement(stack.app)
    assert round1.images == 3
    rows = [[Birads.B4A] * 3, [Birads.B4A] * 3, [Birads.B4A, Birads.B4A, Birads.B5]]
    assert round1.fleiss == pytest.approx(fleiss(rows))
    assert set(round1.cohen) == {
        "|".join(sorted((x.email, y.email)))
        for x, y in [
            (stack.readers[0], stack.readers[1]),
            (stack.readers[0], stack.readers[2]),
            (stack.readers[1], stack.readers[2]),
        ]
    }

    again = sync(stack.app, stack.studio, stack.project.id)
    assert again.events == 0 and again.labels == summary.labels and _statuses(stack) == status


def test_a_webhook_lost_while_the_backend_was_down_is_recovered(stack: Stack) -> None:
    c = _tasks(stack)[2]
    stack.stop_backend()
    try:
        _annotate(stack, 2, c, ACCEPT)  # Label Studio cannot deliver this webhook
    finally:
        stack.restart_backend()
    quick = sync(stack.app, stack.studio, stack.project.id, reconcile=False)
    assert quick.events == 0 and _statuses(stack)[c["data"]["image_id"]] == "pending"
    full = sync(stack.app, stack.studio, stack.project.id)
    assert full.reconciled and _statuses(stack)[c["data"]["image_id"]] == "accepted"


def test_the_running_backend_refuses_malformed_input(stack: Stack) -> None:
    url = stack.settings.backend_url
    assert httpx.post(f"{url}/predict", json={"tasks": "nope"}).status_code == 422
    bad = {"tasks": [{"id": 1, "data": {"image": "file:///etc/passwd"}}]}
    response = httpx.post(f"{url}/predict", json=bad)
    assert response.status_code == 400 and "unsupported image reference" in response.text


def _statuses(stack: Stack) -> dict[int, str]:
    with stack.sessions() as session:
        return {i: str(label.status) for i, label in label_queries.labels_by_image(session).items()}


def test_prelabels_of_every_category_render_with_a_label(stack: Stack) -> None:
    """Plain 4 (a five-way detector's category) included: pushed through the bulk predictions
    import, each region comes back labelled with a label of the project's config, and Label
    Studio logs no prediction validation failure. Runs last: it re-labels the pushed tasks."""
    from bench.support.factories import register_random_detector
    from ml_backend.studio.format import label_interface

    version = register_random_detector(stack.settings, stack.sessions)
    with stack.sessions() as session:
        items = review_queue.review_items(session, model_version_id=stack.version)
    pending = [i.image_id for i in items]
    wanted = {(i.image_id, i.round) for i in items}  # a rejected image's old task stays
    categories = list(Birads)
    assert len(pending) >= len(categories)
    for k, category in enumerate(categories):
        add_prelabels(stack.sessions, version, pending[k :: len(categories)], category)
    summary = push(stack.app, stack.studio, stack.project.id, model_version=version)
    assert summary.predictions_updated + summary.tasks_created == len(pending)

    with stack.studio.http() as c:
        project = c.get(f"/api/projects/{stack.project.id}").json()
        labels = set(label_interface(project["label_config"]).get_control("lesion").labels)  # type: ignore[no-untyped-call]
        shown: set[str] = set()
        tasks = [t for t in _tasks(stack) if (t["data"]["image_id"], t["data"]["round"]) in wanted]
        assert len(tasks) == len(wanted)
        for task in tasks:
            preds = c.get("/api/predictions", params={"task": task["id"]}).json()
            ours = [p for p in preds if p["model_version"] == version]
            assert len(ours) == 1, task["id"]
            boxes = [r for r in ours[0]["result"] if r["from_name"] == "lesion"]
            assert boxes and all(len(r["value"]["rectanglelabels"]) == 1 for r in boxes)
            shown.update(r["value"]["rectanglelabels"][0] for r in boxes)
    assert shown == {f"BI-RADS {c}" for c in categories} and shown <= labels

    # Plain 4 with a BI-RADS-4-excluded splitter: the pipeline's stored pre-label is 4A or 4B.
    split_version = register_random_detector(stack.settings, stack.sessions)
    split_ids = pending[:2]
    with stack.sessions.begin() as session:
        rows = []
        for image_id, p5 in zip(split_ids, (0.9, 0.1), strict=True):
            image = image_queries.image_by_id(session, image_id=image_id)
            assert image is not None
            box = (0.2 * image.width, 0.2 * image.height, 0.6 * image.width, 0.6 * image.height)
            pipeline = splitting_pipeline(split_version, p5, box)
            rows.append(pipeline.predict([_blank(image.width, image.height)])[0].row(image_id))
        prediction_queries.add_predictions(
            session, model_version_id=split_version, predictions=rows
        )
    push(stack.app, stack.studio, stack.project.id, model_version=split_version)
    split_tasks = {
        t["data"]["image_id"]: t
        for t in _tasks(stack)
        if (t["data"]["image_id"], t["data"]["round"]) in wanted
        and t["data"]["image_id"] in split_ids
    }
    with stack.studio.http() as c:
        for image_id, expected in zip(split_ids, ("BI-RADS 4B", "BI-RADS 4A"), strict=True):
            preds = c.get("/api/predictions", params={"task": split_tasks[image_id]["id"]}).json()
            (ours,) = [p for p in preds if p["model_version"] == split_version]
            assert [r["value"]["rectanglelabels"] for r in ours["result"]] == [[expected]]
    log = (stack.settings.home / "logs" / "label-studio.log").read_text(errors="replace")
    assert "Prediction validation failed" not in log


def _blank(width: int, height: int) -> Any:
    import numpy as np

    return np.zeros((height, width, 3), dtype=np.uint8)
