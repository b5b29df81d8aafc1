"""`labeler models optimize`: measure a detector version's pre-label paths, record the choice."""

from __future__ import annotations

from typing import Annotated

import typer

from labeler.cli.common import JsonOpt, app_context, emit


def models_optimize(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Argument(help="Version id (default: the active detector).")
    ] = None,
    calibration_images: Annotated[
        int, typer.Option(min=1, max=10_000, help="Train-split images the int8 graph sees.")
    ] = 100,
    max_images: Annotated[
        int | None,
        typer.Option(min=1, help="Score at most this many validation images (default: all)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the int8 graph and time and score every pre-label path on the validation split.

    `LABELER_PRELABEL_PRECISION=auto` (the default) then pre-labels with the fastest path whose
    lesion mAP@0.5 is within LABELER_PRELABEL_MAX_MAP_DROP points of fp32, on this CPU only.
    The version's sealed files do not change: the results live in HOME/derived/VERSION.
    """
    from labeler.jobs.optimize import optimize_version

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    report = (lambda line: None) if as_json else (lambda line: typer.echo(f"  {line}"))
    choice = optimize_version(
        app_ctx,
        version,
        calibration_images=calibration_images,
        max_images=max_images,
        report=report,
    )
    emit(
        choice.model_dump(mode="json"),
        as_json,
        [
            f"{choice.version}: pre-labels run in {choice.chosen} where "
            f"LABELER_PRELABEL_PRECISION=auto (bound {choice.max_map_drop} points of mAP@0.5; "
            f"{choice.cpu})"
        ],
    )
