"""A stand-in for the few Label Studio endpoints `labeler sync` calls, on 127.0.0.1.

A real Label Studio costs about a minute to start, too much for a test folder that must finish
in 3 minutes; sync needs only: who am I (connect), the project by title, the user list and the
project's tasks with their annotations (labeler/studio/client.py, project.py, sync.py). The
answers have the shapes the SDK parses; pages after the first are empty, as the SDK expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlalchemy.orm import Session, sessionmaker

from bench.support.factories import known_prelabel
from bench.support.loopback import Loopback, Reply, Route, serving
from core.settings import Settings
from db.queries import images as image_queries
from db.queries import studio as studio_queries
from ml_backend.studio.format import prediction_payload, prelabel_rule

PROJECT_ID = 7
READERS = (
    (11, "reader1@labeler.local"),
    (12, "reader2@labeler.local"),
    (13, "reader3@labeler.local"),
)


@dataclass(frozen=True)
class StandinTask:
    ls_task_id: int
    image_id: int
    annotations: list[dict[str, Any]]


def accepting_annotation(
    annotation_id: int, task_id: int, reader: int, size: tuple[int, int], settings: Settings
) -> dict[str, Any]:
    """One reader confirming the fixture pre-label (tests/factories.known_prelabel)."""
    boxes = known_prelabel(*size).boxes
    regions = prediction_payload(
        boxes,
        width=size[0],
        height=size[1],
        model_version="x",
        rule=prelabel_rule(settings),
    ).body()["result"]
    review = {
        "from_name": "review",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": ["Pre-label correct"]},
    }
    return {
        "id": annotation_id,
        "task": task_id,
        "result": [*regions, review],
        "completed_by": reader,
        "was_cancelled": False,
    }


def record_tasks(
    sessions: sessionmaker[Session], settings: Settings, version: str, image_ids: list[int]
) -> list[StandinTask]:
    """Record one task per image (as `labeler studio push` would) with three accepting readers."""
    tasks = []
    with sessions.begin() as session:
        for image_id in image_ids:
            image = image_queries.image_by_id(session, image_id=image_id)
            assert image is not None
            task_id = 500 + image_id
            studio_queries.add_studio_task(
                session,
                image_id=image_id,
                round=1,
                ls_project_id=PROJECT_ID,
                ls_task_id=task_id,
                model_version_id=version,
            )
            size = (image.width, image.height)
            annotations = [
                accepting_annotation(10 * task_id + k, task_id, reader, size, settings)
                for k, (reader, _) in enumerate(READERS)
            ]
            tasks.append(StandinTask(task_id, image_id, annotations))
    return tasks


def queue_events(
    sessions: sessionmaker[Session], tasks: list[StandinTask], n: int, *, malformed: bool = True
) -> int:
    """Store webhook events for the first `n` tasks: one valid annotation each and, with
    `malformed`, one whose `result` is a string (issue 12 item 3); returns how many are bad."""
    with sessions.begin() as session:
        for task in tasks[:n]:
            bad = {**task.annotations[1], "result": "oops"}
            for annotation in (task.annotations[0], bad) if malformed else task.annotations:
                studio_queries.add_studio_event(
                    session,
                    event=studio_queries.NewStudioEvent(
                        action="ANNOTATION_CREATED",
                        payload={"action": "ANNOTATION_CREATED", "annotation": annotation},
                        ls_project_id=PROJECT_ID,
                        ls_task_id=task.ls_task_id,
                        ls_annotation_id=int(annotation["id"]),
                    ),
                )
    return min(n, len(tasks)) if malformed else 0


def _page(path: str) -> int:
    return int((parse_qs(urlparse(path).query).get("page") or ["1"])[0])


def routes(tasks: list[StandinTask], title: str) -> dict[str, Route]:
    def whoami(_path: str) -> Reply:
        return Reply.json({"id": 1, "email": "admin@labeler.local", "username": "admin"})

    def projects(path: str) -> Reply:
        results = [{"id": PROJECT_ID, "title": title}] if _page(path) == 1 else []
        return Reply.json(
            {"count": len(results), "next": None, "previous": None, "results": results}
        )

    def users(_path: str) -> Reply:
        return Reply.json([{"id": i, "email": e, "username": e.split("@")[0]} for i, e in READERS])

    def task_list(path: str) -> Reply:
        listed = [
            {"id": t.ls_task_id, "project": PROJECT_ID, "data": {}, "annotations": t.annotations}
            for t in tasks
        ]
        page = listed if _page(path) == 1 else []
        n_ann = sum(len(t.annotations) for t in tasks)
        return Reply.json(
            {
                "tasks": page,
                "total": len(listed),
                "total_annotations": n_ann,
                "total_predictions": 0,
            }
        )

    return {
        "/api/current-user/whoami": whoami,
        "/api/projects/": projects,
        "/api/users/": users,
        "/api/tasks/": task_list,
    }


@contextmanager
def studio_standin(tasks: list[StandinTask], title: str) -> Iterator[Loopback]:
    with serving(routes(tasks, title)) as server:
        yield server
