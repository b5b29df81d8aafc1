"""Label Studio commands: serve the ML backend, set up the project, push tasks, sync reviews."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from labeler.cli.common import JsonOpt, app_context, emit, fail
from labeler.context import AppContext
from labeler.progress import ProgressBar

if TYPE_CHECKING:
    from labeler.studio.client import Studio


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Bind address (keep it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 9090,
) -> None:
    """Run the ML backend Label Studio calls (/health, /setup, /predict, /webhook, /versions)."""
    import uvicorn

    from ml_backend.server.app import create_app

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    uvicorn.run(create_app(app_ctx.settings), host=host, port=port, log_level="warning")


def studio_setup(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create or update the review project, its storage, ML backend, webhook and readers."""
    from labeler.studio.project import ensure_project
    from labeler.studio.readers import ensure_readers

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with _errors():
        studio = _connect(app_ctx)
        info = ensure_project(studio, app_ctx.settings)
        readers = ensure_readers(studio, app_ctx.settings)
    data = {**dataclasses.asdict(info), "readers": [r.email for r in readers]}
    lines = [
        f"project {info.id} ({'created' if info.created else 'updated'}) at "
        f"{app_ctx.settings.studio_url}/projects/{info.id}",
        f"readers: {', '.join(r.email for r in readers)}",
    ]
    emit(data, as_json, lines)


def studio_push(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Version (default: active).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tasks with pre-labels for every image that needs readers, most uncertain first."""
    from labeler.jobs.versions import resolve
    from labeler.studio.project import ensure_project
    from labeler.studio.push import push

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with _errors():
        _, info = resolve(app_ctx, model)
        studio = _connect(app_ctx)
        project = ensure_project(studio, app_ctx.settings)
        with ProgressBar("push") as bar:
            summary = push(app_ctx, studio, project.id, model_version=info.id, advance=bar.advance)
    emit(
        dataclasses.asdict(summary),
        as_json,
        [
            f"{summary.model_version}: {summary.tasks_created} tasks created, "
            f"{summary.predictions_updated} pre-labels updated, "
            f"{summary.already_current} already current"
        ],
    )


def studio_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Is Label Studio up, which project, how many tasks and webhook events are waiting."""
    from db import queries
    from labeler.studio.project import find_project
    from labeler.studio.sync import ANNOTATION_ACTIONS

    app_ctx = app_context(ctx)
    app_ctx.require_schema()
    with _errors():
        studio = _connect(app_ctx)
        project_id = find_project(studio, app_ctx.settings.studio_project)
    with app_ctx.sessions() as session:
        tasks = len(queries.studio_tasks(session, ls_project_id=project_id or -1))
        waiting = sum(
            queries.count_studio_events(session, action=a, processed=False)
            for a in ANNOTATION_ACTIONS
        )
        training = queries.count_studio_events(session, action="START_TRAINING")
        labels = queries.label_counts(session)
    data = {
        "studio_url": app_ctx.settings.studio_url,
        "project_id": project_id,
        "tasks": tasks,
        "events_waiting": waiting,
        "training_requests": training,
        "labels": labels,
    }
    emit(data, as_json, [f"{k}: {v}" for k, v in data.items()])


def sync(
    ctx: typer.Context,
    reconcile: Annotated[
        bool, typer.Option(help="Also read every annotation through the API.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Annotations -> reviews -> accepted / rejected / pending, and reader agreement."""
    from labeler.studio import sync as studio_sync
    from labeler.studio.project import find_project

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with _errors():
        studio = _connect(app_ctx)
        project_id = find_project(studio, app_ctx.settings.studio_project)
        if project_id is None:
            raise fail("no review project in Label Studio yet: run `labeler studio setup`")
        summary = studio_sync.sync(app_ctx, studio, project_id, reconcile=reconcile)
    rounds = studio_sync.agreement(app_ctx)
    data = {**dataclasses.asdict(summary), "agreement": [dataclasses.asdict(r) for r in rounds]}
    lines = [
        f"{summary.events} webhook events, {summary.reviews_upserted} reviews upserted, "
        f"{summary.reviews_deleted} removed; labels: {summary.labels}",
        *(f"round {r.round}: Fleiss kappa {_fmt(r.fleiss)} on {r.images} images" for r in rounds),
        *(f"skipped {s}" for s in summary.skipped),
    ]
    emit(data, as_json, lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _connect(app_ctx: AppContext) -> Studio:
    from labeler.studio.client import connect

    return connect(app_ctx.settings)


@contextmanager
def _errors() -> Iterator[None]:
    """Label Studio down or refusing: a clear message and exit code 3, nothing half-written."""
    from labeler.studio.client import StudioRequestError, StudioUnavailableError

    try:
        yield
    except (StudioUnavailableError, StudioRequestError, LookupError) as exc:
        raise fail(str(exc), code=3) from None
