"""Create or update the review project: label config, 3 readers per task, storage, ML backend.

Queue order: readers get the active-learning order through the "Queue" Data Manager tab, sorted
by `data.queue_rank` (labeler.studio.push.queue_order). Label Studio 1.23 serves a label stream
started from a tab with an ordering in that tab's order (projects/functions/next_task.py,
"Data manager queue"); otherwise it uses the project's sampling, sequential here, by task id,
and the push imports new tasks in queue order. The prediction score is a probability, never
the queue position, so uncertainty sampling (lowest score first) is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from core.settings import Settings
from labeler.studio.client import Studio
from ml_backend.studio.format import label_config


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    created: bool
    ml_backend_id: int
    storage_id: int
    webhook_url: str


def ensure_project(studio: Studio, settings: Settings) -> ProjectInfo:
    """Idempotent: a second call updates what exists instead of duplicating it."""
    options: dict[str, Any] = {
        "label_config": label_config(),
        "maximum_annotations": settings.consensus_quorum,
        "overlap_cohort_percentage": 100,
        "show_collab_predictions": True,
        "sampling": "Sequential sampling",
        "show_skip_button": True,
        "description": "Check each pre-label: correct, corrected, or reject.",
    }
    project_id = find_project(studio, settings.studio_project)
    created = project_id is None
    if project_id is None:
        new = studio.call(
            lambda: studio.sdk.projects.create(title=settings.studio_project, **options)
        )
        assert new.id is not None
        project_id = new.id
    else:
        pid = project_id
        studio.call(lambda: studio.sdk.projects.update(id=pid, **options))
    storage = _ensure_storage(studio, project_id, settings)
    backend = _ensure_ml_backend(studio, project_id, settings)
    webhook = _ensure_webhook(studio, project_id, settings)
    _ensure_queue_view(studio, project_id)
    return ProjectInfo(project_id, created, backend, storage, webhook)


def find_project(studio: Studio, title: str) -> int | None:
    projects: list[Any] = studio.call(lambda: list(studio.sdk.projects.list(title=title)))
    for project in projects:
        if project.title == title and project.id is not None:
            return int(project.id)
    return None


def _ensure_storage(studio: Studio, project_id: int, settings: Settings) -> int:
    """Local-files storage over the PNG folder, so Label Studio may serve our images."""
    path = str(settings.images_dir)
    settings.images_dir.mkdir(parents=True, exist_ok=True)
    for storage in studio.call(lambda: studio.sdk.import_storage.local.list(project=project_id)):
        if storage.path == path and storage.id is not None:
            return int(storage.id)
    made = studio.call(
        lambda: studio.sdk.import_storage.local.create(
            project=project_id, path=path, title="Imported PNGs", use_blob_urls=True
        )
    )
    assert made.id is not None
    return int(made.id)


def _ensure_ml_backend(studio: Studio, project_id: int, settings: Settings) -> int:
    url = settings.backend_url.rstrip("/")
    auth: dict[str, Any] = {"auth_method": "NONE"}
    if settings.backend_auth == "basic":
        password = settings.backend_password.get_secret_value() if settings.backend_password else ""
        auth = {
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": settings.backend_user,
            "basic_auth_pass": password,
        }
    for backend in studio.call(lambda: studio.sdk.ml.list(project=project_id)):
        if backend.url.rstrip("/") == url and backend.id is not None:
            bid = int(backend.id)
            studio.call(lambda: studio.sdk.ml.update(id=bid, project=project_id, url=url, **auth))  # noqa: B023
            return bid
    made = studio.call(
        lambda: studio.sdk.ml.create(
            project=project_id,
            url=url,
            title="BI-RADS detector",
            is_interactive=False,
            auto_update=True,
            **auth,
        )
    )
    assert made.id is not None
    return int(made.id)


def _ensure_webhook(studio: Studio, project_id: int, settings: Settings) -> str:
    """Label Studio adds the backend's webhook itself; make sure it exists with payloads on and
    carries the backend's credentials when its auth is on (else every event would be a 401,
    and only sync's reconcile would see the annotations)."""
    url = settings.backend_url.rstrip("/") + "/webhook"
    authorization = settings.backend_authorization()
    headers = {"Authorization": authorization} if authorization else {}
    hooks = studio.call(lambda: studio.sdk.webhooks.list(project=str(project_id)))
    ours = [h for h in hooks if h.url == url and h.id is not None]
    if not ours:
        studio.call(
            lambda: studio.sdk.webhooks.create(
                project=project_id,
                url=url,
                send_payload=True,
                send_for_all_actions=True,
                headers=headers,
            )
        )
    for hook in ours:
        if (hook.headers or {}) != headers:
            hook_id = int(hook.id)
            studio.call(lambda: studio.sdk.webhooks.update(hook_id, headers=headers))  # noqa: B023
    return url


QUEUE_VIEW = "Queue"
QUEUE_ORDERING = ["tasks:data.queue_rank"]


def _ensure_queue_view(studio: Studio, project_id: int) -> None:
    """The project's first Data Manager tab, sorted by the active-learning queue rank."""
    data = cast(Any, {"title": QUEUE_VIEW, "ordering": QUEUE_ORDERING})
    views: list[Any] = studio.call(lambda: list(studio.sdk.views.list(project=project_id)))
    ids = [str(v.id) for v in views if (v.data or {}).get("title") == QUEUE_VIEW and v.id]
    if ids:
        studio.call(lambda: studio.sdk.views.update(ids[0], data=data, project=project_id))
    else:
        studio.call(lambda: studio.sdk.views.create(data=data, project=project_id))
