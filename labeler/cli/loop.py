"""The active-learning loop's commands: `labeler retrain` (cron) and `labeler simulate`."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from labeler.cli.common import JsonOpt, app_context, emit, fail


def retrain(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Retrain even without enough new labels.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Say what would happen and why; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cron job: fine-tune on new accepted labels, gate on the test split, promote, pre-label.

    Exit codes: 0 done or nothing to do, 4 another run holds the lock, 1 training failed.
    """
    from labeler.jobs.retrain import TrainingFailedError
    from labeler.jobs.retrain import retrain as run
    from labeler.lock import AlreadyRunningError

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()

    def say(msg: str) -> None:
        typer.echo(msg, err=True)

    try:
        report = run(app_ctx, force=force, dry_run=dry_run, say=say)
    except AlreadyRunningError as exc:
        raise fail(str(exc), code=4) from None
    except TrainingFailedError as exc:
        raise fail(str(exc), code=1) from None
    data = dataclasses.asdict(report)
    verb = "would retrain" if report.plan.run else "nothing to do"
    lines = [f"{verb}: {report.plan.reason}"]
    if report.candidate:
        lines.append(f"candidate {report.candidate}: {report.gate.get('reason')}")
        lines.append("promoted" if report.promoted else "not promoted; the active version stays")
    if report.studio_error:
        lines.append(f"Label Studio not updated: {report.studio_error}")
    emit(data, as_json, lines)
