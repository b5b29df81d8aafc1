"""Label Studio commands: serve the ML backend, set up the project, push tasks, sync reviews."""

from __future__ import annotations

import dataclasses
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
    """Run the ML backend Label Studio calls (/health, /setup, /predict, /webhook, /versions).

    Auth switched on without its secret: one line and exit code 2, nothing served. A damaged
    active detector (files missing or changed): one line, and the backend still starts, because
    the cached pre-labels stay right and readers keep getting them; /setup and cache misses then
    answer 503 with the same line until the version is restored or rolled back.
    """
    import uvicorn

    from ml_backend.server.app import create_app

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    backend = create_app(app_ctx.settings)  # auth without its secret: a BadInputError, exit 2
    damage = backend.state.service.damage()
    if damage is not None:
        typer.secho(f"warning: {damage}; serving cached pre-labels only", fg="yellow", err=True)
    uvicorn.run(backend, host=host, port=port, log_level="warning")


def studio_config() -> None:
    """Print the label config (Label Studio XML) that `labeler studio setup` installs."""
    from ml_backend.studio.format import label_config

    typer.echo(label_config())


def studio_logins(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Print the Label Studio logins and their passwords (kept owner-only in
    LABELER_HOME/.secrets.json). The demo never prints passwords into its log; this does, on
    request, to the terminal that asks."""
    from labeler.studio.readers import stored_logins

    logins = stored_logins(app_context(ctx).settings)
    data = {"logins": [{"role": r, "email": e, "password": p} for r, e, p in logins]}
    lines = [
        f"{role:6s} {email}  {password or '(not created yet: run `labeler studio setup`)'}"
        for role, email, password in logins
    ]
    emit(data, as_json, lines)


def studio_setup(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create or update the review project, its storage, ML backend, webhook and readers."""
    from labeler.studio.project import ensure_project
    from labeler.studio.readers import ensure_readers

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
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
    """Is Label Studio up, which project, how many tasks and webhook events are waiting, and
    which events the sync set aside (could not apply) with their reasons."""
    from db.queries import labels as label_queries
    from db.queries import studio as studio_queries
    from labeler.studio.project import find_project
    from ml_backend.studio.events import ANNOTATION_ACTIONS

    app_ctx = app_context(ctx)
    app_ctx.require_schema()
    studio = _connect(app_ctx)
    project_id = find_project(studio, app_ctx.settings.studio_project)
    with app_ctx.sessions() as session:
        tasks = len(studio_queries.studio_tasks(session, ls_project_id=project_id or -1))
        waiting = sum(
            studio_queries.count_studio_events(session, action=a, processed=False)
            for a in ANNOTATION_ACTIONS
        )
        training = studio_queries.count_studio_events(session, action="START_TRAINING")
        labels = label_queries.label_counts(session)
        set_aside = studio_queries.count_set_aside_studio_events(session)
        newest = studio_queries.set_aside_studio_events(session, limit=5)
    data = {
        "studio_url": app_ctx.settings.studio_url,
        "project_id": project_id,
        "tasks": tasks,
        "events_waiting": waiting,
        "training_requests": training,
        "labels": labels,
        "events_set_aside": set_aside,
        "set_aside_newest": [
            {
                "event_id": e.id,
                "action": e.action,
                "received_at": e.received_at.isoformat(),
                "reason": e.reason,
            }
            for e in newest
        ],
    }
    lines = [f"{k}: {v}" for k, v in data.items() if k != "set_aside_newest"]
    lines += [f"  set aside: event {e.id} ({e.action}): {e.reason}" for e in newest]
    emit(data, as_json, lines)


def sync(
    ctx: typer.Context,
    reconcile: Annotated[
        bool, typer.Option(help="Also read every annotation through the API.")
    ] = True,
    wait: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds to wait for a sync already running (then exit 4); 0: no wait."
        ),
    ] = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Annotations -> reviews -> accepted / rejected / pending, and reader agreement.

    One sync at a time: a second one waits for the running one, then runs (exit 4 if it is
    still running after --wait seconds). Events that cannot be applied are set aside with their
    reason (`labeler studio status`); the others go on.
    """
    from core.text import counts, plural
    from db.agreement import kappa_text
    from labeler.studio import sync as studio_sync
    from labeler.studio.project import find_project

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    studio = _connect(app_ctx)
    project_id = find_project(studio, app_ctx.settings.studio_project)
    if project_id is None:
        raise fail("no review project in Label Studio yet: run `labeler studio setup`")
    # another sync still running after --wait: AlreadyRunningError, a BusyError (exit 4)
    summary = studio_sync.sync(app_ctx, studio, project_id, reconcile=reconcile, wait_s=wait)
    rounds = studio_sync.agreement(app_ctx)
    quorum = app_ctx.settings.consensus_quorum  # the readers per image its Fleiss kappa needs
    data = {**dataclasses.asdict(summary), "agreement": [dataclasses.asdict(r) for r in rounds]}
    lines = [
        f"{plural(summary.events, 'webhook event')} applied, {summary.events_set_aside} set aside; "
        f"reviews: {summary.reviews_new} new, {summary.reviews_updated} updated, "
        f"{summary.reviews_unchanged} unchanged, {summary.reviews_deleted} removed; "
        f"labels: {counts(summary.labels, LABEL_ORDER) or 'none yet'}",
        *(
            f"round {r.round}: Fleiss kappa "
            f"{kappa_text(r.fleiss, images=r.images, readers=quorum)} on "
            f"{plural(r.images, 'image')}"
            for r in rounds
        ),
        *(f"skipped {s}" for s in summary.skipped),
    ]
    emit(data, as_json, lines)


LABEL_ORDER = ("accepted", "rejected", "pending")


def _connect(app_ctx: AppContext) -> Studio:
    from labeler.studio.client import connect

    return connect(app_ctx.settings)
