"""The active-learning loop's commands: `labeler retrain` (cron) and `labeler simulate`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

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

    Exit codes: 0 done or nothing to do, 1 training failed, 4 another run holds the lock,
    5 the database is unusable, 6 the active model is damaged, 7 the disk is full.
    """
    from labeler.jobs.retrain import retrain as run

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()

    def say(msg: str) -> None:
        typer.echo(msg, err=True)

    report = run(app_ctx, force=force, dry_run=dry_run, say=say)  # errors: one line, their code
    data = dataclasses.asdict(report)
    verb = "would retrain" if report.plan.run else "nothing to do"
    lines = [f"{verb}: {report.plan.reason}"]
    if report.candidate and report.gate:
        lines.append(f"candidate {report.candidate}: {report.gate.reason}")
        lines.append("promoted" if report.promoted else "not promoted; the active version stays")
    if report.no4_candidate and report.no4_gate:
        kept = f"promoted {report.no4}" if report.no4 else "not promoted"
        lines.append(f"4A/4B splitter {report.no4_candidate}: {report.no4_gate.reason}; {kept}")
    for version, chosen in report.precision.items():
        lines.append(f"{version} pre-labels in {chosen} (`labeler models optimize` measured it)")
    if report.indexed is not None:
        lines.append(f"similar-lesion index rebuilt: {report.indexed} boxes")
    if report.index_error:
        lines.append(f"similar-lesion index not rebuilt: {report.index_error}")
    if report.studio_error:
        lines.append(f"Label Studio not updated: {report.studio_error}")
    emit(data, as_json, lines)


def simulate(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="Dataset adapter of --data (busbra, ...).")],
    data: Annotated[Path, typer.Option(help="The fully labeled dataset folder.")],
    strategy: Annotated[
        list[str],
        typer.Option(
            help="Repeat for several: random, least-confidence, margin, entropy, flip, coreset."
        ),
    ],
    rounds: Annotated[int, typer.Option(min=1)] = 3,
    per_round: Annotated[int, typer.Option(min=1, help="Images reviewed per round.")] = 50,
    seed_labels: Annotated[int, typer.Option(min=1)] = 100,
    reader_error: Annotated[
        list[float] | None, typer.Option(help="One per simulated reader (default 0.05 0.1 0.15).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per (re)training.")] = 1,
    pool_limit: Annotated[int, typer.Option(min=1, help="Pool images scored per round.")] = 400,
    corrections: Annotated[
        bool, typer.Option(help="Images not accepted join training with the reference label.")
    ] = False,
    seed: int = 0,
    preset: Annotated[
        str,
        typer.Option(help="Detector preset: tiny (tests), small (CPU) or r101-800 (the paper's)."),
    ] = "small",
    as_json: JsonOpt = False,
) -> None:
    """The loop without humans on a fully labeled dataset: a learning curve per strategy."""
    from labeler.jobs.simulate import SimulationConfig
    from labeler.jobs.simulate import simulate as run
    from ml_backend.active.strategies import NAMES
    from ml_backend.detector.config import load_config

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    unknown = [s for s in strategy if s not in NAMES]
    if unknown:
        raise fail(f"unknown strategy {unknown}: choose from {', '.join(NAMES)}")
    load_config(preset)  # an unknown preset: UnknownConfigError (exit 2) before any work
    errors = tuple(reader_error) if reader_error else SimulationConfig.reader_errors
    curves: list[dict[str, Any]] = []
    for name in strategy:
        config = SimulationConfig(
            dataset,
            data.resolve(),
            name,
            rounds,
            per_round,
            seed_labels,
            errors,
            epochs,
            pool_limit,
            corrections,
            seed,
            preset,
        )
        result = run(app_ctx.settings, config, say=lambda m: typer.echo(m, err=True))
        curves.append(result.to_json())
    lines = [
        f"{c['simulation']}: "
        + ", ".join(
            f"{p['reviews']} reviews -> mAP@0.5 {p['metrics']['map50']}" for p in c["points"]
        )
        for c in curves
    ]
    emit({"curves": curves}, as_json, lines)
