"""Data commands: init, db migrations, import, status, demo."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy.engine import make_url

from core.text import plural
from db import migrate
from db.models import Split
from db.queries import images as image_queries
from db.queries import phi as phi_queries
from labeler.cli.common import JsonOpt, app_context, emit
from labeler.context import AppContext
from labeler.importing.pipeline import run_import
from labeler.importing.summary import ImportSummary
from labeler.progress import ProgressBar
from labeler.sample import SAMPLES, importable

if TYPE_CHECKING:
    from labeler.services import Services


class DatasetName(StrEnum):
    folder = "folder"
    busbra = "busbra"
    breast_lesions_usg = "breast-lesions-usg"


def init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create LABELER_HOME and bring the database schema up to date."""
    app_ctx = app_context(ctx)
    revision = app_ctx.ensure_schema()
    data = {
        "home": str(app_ctx.settings.home),
        "db_url": make_url(app_ctx.settings.db_url).render_as_string(hide_password=True),
        "data_root": str(app_ctx.settings.data_root),
        "revision": revision,
    }
    emit(data, as_json, [f"{k}: {v}" for k, v in data.items()])


def db_upgrade(ctx: typer.Context, revision: str = "head") -> None:
    """Upgrade the schema (default: to the newest revision)."""
    app_ctx = app_context(ctx)
    migrate.upgrade(app_ctx.engine, revision)
    typer.echo(f"database at {migrate.current_revision(app_ctx.engine)}")


def db_downgrade(ctx: typer.Context, revision: str) -> None:
    """Downgrade the schema to REVISION ('base' drops every table: data is lost)."""
    app_ctx = app_context(ctx)
    migrate.downgrade(app_ctx.engine, revision)
    typer.echo(f"database at {migrate.current_revision(app_ctx.engine) or 'base'}")


def db_current(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the schema revision of the database and the newest one this code knows."""
    app_ctx = app_context(ctx)
    data = {"current": migrate.current_revision(app_ctx.engine), "head": migrate.head_revision()}
    emit(data, as_json, [f"current: {data['current'] or 'none'}", f"head: {data['head']}"])


def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A folder (or file) under LABELER_DATA_ROOT.")],
    dataset: Annotated[
        DatasetName, typer.Option(help="How to read PATH: plain images or a known dataset.")
    ] = DatasetName.folder,
    workers: Annotated[int | None, typer.Option(min=1, help="Conversion processes.")] = None,
    redact_text: Annotated[
        bool,
        typer.Option(
            "--redact-text", help="Black out text found in the pixels (OCR) in the stored PNGs."
        ),
    ] = False,
    split: Annotated[
        Split | None,
        typer.Option(
            help="Put every new image in this split (test: an external set, never trained on); "
            "default: by patient fold."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import PNG/JPEG/DICOM images (DICOM de-identified) with their dataset's labels.

    Images whose DICOM header says BurnedInAnnotation=YES are held back from Label Studio until
    `labeler images release ID`. Text in the pixels is looked for with Tesseract (if installed;
    LABELER_OCR=off skips it) and reported; --redact-text blacks it out. One import runs at a
    time: a second one waits for the first.

    Exit code 0: all files imported or already present; 1: some files failed (the rest were
    imported, see errors); 2: nothing imported (bad path, outside the data root, wrong layout).
    An image imported before keeps its split; the summary counts those --split did not move.
    """
    app_ctx = app_context(ctx)
    summary = _import(app_ctx, path, dataset, redact_text=redact_text, workers=workers, split=split)
    emit(summary.to_dict(), as_json, summary.lines())
    if summary.errors:
        raise typer.Exit(1)


def _import(
    app_ctx: AppContext,
    path: Path,
    dataset: DatasetName,
    *,
    redact_text: bool = False,
    workers: int | None = None,
    split: Split | None = None,
) -> ImportSummary:
    """A refused path or a wrong layout is a BadInputError (exit 2): nothing was imported.

    --workers applies to this import only: a copy of the settings, the shared one unchanged."""
    app_ctx.ensure_schema()
    settings = app_ctx.settings
    if workers is not None:
        settings = settings.model_copy(update={"import_workers": workers})
    with ProgressBar(f"import {dataset.value}") as bar:
        return run_import(
            path,
            dataset=dataset.value,
            settings=settings,
            sessions=app_ctx.sessions,
            progress=bar,
            redact_text=redact_text,
            split=split,
            say=lambda line: typer.echo(line, err=True),
        )


def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """What the database holds: images per dataset, split, BI-RADS and pathology."""
    app_ctx = app_context(ctx)
    app_ctx.require_schema()  # not ready: one line and exit code 2 (a LabelerError)
    with app_ctx.sessions() as session:
        counts = image_queries.image_counts(session)
        phi = phi_queries.phi_counts(session)
    data = {
        "images": counts.total,
        "patients": counts.patients,
        "datasets": counts.by_dataset,
        "splits": counts.by_split,
        "splits_by_dataset": counts.splits_by_dataset,
        "birads": counts.by_birads,
        "pathology": counts.by_pathology,
        "held": phi.held,
        "pixel_text": {
            "found": phi.text_found,
            "redacted": phi.text_redacted,
            "none_found": phi.text_none_found,
            "not_checked": phi.text_not_checked,
        },
    }
    lines = [f"{k}: {data[k]}" for k in ("images", "patients", "datasets", "splits")]
    lines += [
        f"  {name}: " + ", ".join(f"{split} {n}" for split, n in splits.items())
        for name, splits in counts.splits_by_dataset.items()
    ]
    lines += [f"{k}: {data[k]}" for k in ("birads", "pathology")]
    lines.append(
        f"held back from Label Studio: {phi.held}"
        + ("  (`labeler images held` lists them)" if phi.held else "")
    )
    lines.append(
        f"text in the pixels: found in {phi.text_found} ({phi.text_redacted} redacted), "
        f"none found in {phi.text_none_found}, not checked in {phi.text_not_checked}"
    )
    emit(data, as_json, lines)


def demo(
    ctx: typer.Context,
    services: Annotated[
        bool, typer.Option(help="Also train/load, pre-label, and start the three services.")
    ] = True,
    wait: Annotated[
        bool, typer.Option(help="Keep the services up until Ctrl-C (--no-wait: stop at once).")
    ] = True,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs if a model must be trained.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """The bundled sample end to end: import, model, pre-labels, Label Studio, backend, dashboard.

    Safe to run again: everything that exists is reused.
    """
    app_ctx = app_context(ctx)
    results = []
    for name, dataset in SAMPLES.items():
        folder = importable(name, app_ctx.settings.data_root)  # missing: BadInputError
        summary = _import(app_ctx, folder, DatasetName(dataset))
        results.append(summary.to_dict())
        if not as_json:
            typer.echo("\n".join(summary.lines()))
    if any(r["errors"] for r in results):
        raise typer.Exit(1)
    data: dict[str, Any] = {"home": str(app_ctx.settings.home), "imports": results}
    if not services:
        lines = [
            f"\nready: database and PNGs under {app_ctx.settings.home}",
            "next: `labeler status` shows what is in the database",
        ]
        emit(data, as_json, lines)
        return
    _demo_services(app_ctx, data, epochs=epochs, wait=wait, as_json=as_json)


def _demo_services(
    app_ctx: AppContext, data: dict[str, Any], *, epochs: int, wait: bool, as_json: bool
) -> None:
    with _stop_on_signals():
        _run_demo(app_ctx, data, epochs=epochs, wait=wait, as_json=as_json)


def _run_demo(
    app_ctx: AppContext, data: dict[str, Any], *, epochs: int, wait: bool, as_json: bool
) -> None:
    from labeler.demo import bring_up

    def say(msg: str) -> None:
        typer.echo(msg, err=True)

    # Label Studio missing, down or refusing, a service that did not start: StudioError, exit 3
    state = bring_up(app_ctx, epochs=epochs, say=say)
    urls = {s.name: s.url for s in state.services.running}
    models = state.models
    data.update(
        model_version=models.detector,
        splitter=models.splitter,
        encoder=models.encoder,
        trained=models.trained,
        tasks_created=state.tasks_created,
        project_url=state.project_url,
        urls=urls,
        logins={
            "admin": app_ctx.settings.studio_admin_email,
            "readers": [r.email for r in state.readers],
            "passwords": str(app_ctx.settings.home / ".secrets.json"),
        },
    )
    lines = [
        "",
        f"ready: detector {models.detector}, 4A/4B splitter {models.splitter}, "
        f"encoder {models.encoder}",
        *(f"{name:13s} {url}" for name, url in urls.items()),
        f"review tasks  {state.project_url} ({plural(state.tasks_created, 'new task')})",
        f"logins        {app_ctx.settings.studio_admin_email} (admin) and "
        + ", ".join(r.email for r in state.readers),
        f"passwords     in {app_ctx.settings.home / '.secrets.json'} (owner-only); "
        "`labeler studio logins` prints them",
    ]
    emit(data, as_json, lines)
    try:
        if wait:
            typer.echo("Ctrl-C stops all three services.", err=True)
            _wait_for_interrupt(state.services)
    finally:
        state.services.stop()
        typer.echo("stopped.", err=True)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM (systemd, kill) both raise KeyboardInterrupt, so the services started
    so far are stopped by pid, also while they are still starting."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell may have started us with it ignored
    before = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _wait_for_interrupt(services: Services) -> None:
    import time

    try:
        while all(s.process is None or s.process.poll() is None for s in services.running):
            time.sleep(1.0)
        typer.echo("a service exited; see LABELER_HOME/logs", err=True)
    except KeyboardInterrupt:
        pass
