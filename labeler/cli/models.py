"""Model commands: train, evaluate, predict, and the registry (list, promote, rollback).

Heavy imports (torch) happen inside the commands, so `labeler --help` and the data commands stay
fast.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.errors import ExitCode
from labeler.cli.common import JsonOpt, app_context, emit, fail
from labeler.context import AppContext
from labeler.progress import ProgressBar, TrainProgress

if TYPE_CHECKING:
    from ml_backend.registry.registry import VersionInfo


class ConfigName(StrEnum):
    tiny = "tiny"  # tests and quick checks
    small = "small"
    r101_800 = "r101-800"


class SplitName(StrEnum):
    train = "train"
    val = "val"
    test = "test"


def train(
    ctx: typer.Context,
    config: Annotated[ConfigName, typer.Option(help="Detector preset.")] = ConfigName.small,
    exclude_birads: Annotated[
        str | None, typer.Option(help="'4': train without BI-RADS 4 (the 4A/4B splitter).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the preset.")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the last unfinished run on the same data (exit code 4 while a live "
            "trainer holds it)."
        ),
    ] = False,
    from_version: Annotated[
        str | None,
        typer.Option(help="Fine-tune this version (its config; --config is ignored)."),
    ] = None,
    reference: Annotated[
        bool, typer.Option(help="Train on the train split's reference labels too (the seed).")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train a detector on the train split and register it; prints the new version id."""
    from labeler.jobs.train import config_of_version, make_config, train_detector

    if exclude_birads not in (None, "4"):
        raise fail(f"--exclude-birads only takes 4 (got {exclude_birads!r})")
    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    exclude_4 = exclude_birads == "4"
    if from_version:
        cfg = config_of_version(app_ctx, from_version, epochs=epochs)
    else:
        cfg = make_config(config.value, exclude_4=exclude_4, epochs=epochs)
    with TrainProgress() as hooks:  # no data, a diverging loss: JobFailedError, exit 1
        out = train_detector(
            app_ctx,
            config=cfg,
            exclude_4=exclude_4,
            resume=resume,
            hooks=hooks,
            init_from=from_version,
            include_reference=reference,
        )
    data = dataclasses.asdict(out) | {"metrics": out.metrics.model_dump(mode="json")}
    emit(
        data,
        as_json,
        [out.version_id] + ([f"promoted: {out.kind} now serves it"] if out.promoted else []),
    )


def evaluate(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Version id (default: active detector).")
    ] = None,
    split: Annotated[SplitName, typer.Option(help="Patient-disjoint split.")] = SplitName.test,
    as_json: JsonOpt = False,
) -> None:
    """Score a model on a split (Tables I-III, COCO mAP) and store it in the database."""
    from db.models import Split
    from labeler.jobs.evaluate import evaluate_version

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with ProgressBar(f"evaluate {split.value}") as bar:
        result = evaluate_version(
            app_ctx,
            version_id=model,
            split=Split(split.value),
            start=bar.start,
            advance=bar.advance,
        )
    m, d, screening = result.metrics, result.metrics.detection, result.metrics.screening
    acc = screening.rates.acc.value if screening.rates.acc is not None else None
    lines = [
        f"{result.model} on {result.split} ({m.n_images} images)",
        f"  mAP@0.5 {d.map50}  mAP@[.5:.95] {d.map50_95}  lesion recall@0.5 "
        f"{d.lesion_recall50}  FP/image {d.fp_per_image}",
        f"  screening ACC {acc}  AUC {screening.auc}  "
        f"(plain 4 counted as {screening.plain_4_counted_as.value})",
    ]
    emit(result.to_json(), as_json, lines)


def predict(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Version id (default: active detector).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pre-label every image that has no prediction from the model yet (resumable)."""
    from labeler.jobs.predict import predict_pool

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with ProgressBar("pre-label") as bar:
        summary = predict_pool(app_ctx, version_id=model, start=bar.start, advance=bar.advance)
    data = dataclasses.asdict(summary)
    emit(
        data,
        as_json,
        [
            f"{summary.model}: {summary.predicted} images pre-labeled, "
            f"{summary.already_predicted} already were"
        ],
    )


def _registry(app_ctx: AppContext) -> Any:
    from ml_backend.registry import ModelRegistry

    app_ctx.ensure_schema()
    return ModelRegistry.for_settings(app_ctx.settings, app_ctx.sessions)


def _version_dict(v: VersionInfo) -> dict[str, Any]:
    return {
        "id": v.id,
        "kind": v.kind,
        "active": v.active,
        "parent": v.parent_id,
        "label_space": list(v.label_space),
        "created_at": str(v.created_at),
        "metrics": v.metrics.model_dump(mode="json") if v.metrics is not None else None,
    }


def models_list(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="detector, detector_no4 or encoder")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered versions, newest first; * marks the active one of its kind, and the last
    column says whether its files are as registered (ok) or not (damaged)."""
    registry = _registry(app_context(ctx))
    versions = []
    for info in registry.list_versions(kind):
        problems = registry.verify(info.id)
        versions.append(_version_dict(info) | {"damaged": bool(problems), "problems": problems})
    lines = [
        f"{'*' if v['active'] else ' '} {v['id']}  {v['kind']}  {v['created_at']}  "
        f"{'damaged' if v['damaged'] else 'ok'}"
        for v in versions
    ]
    emit({"versions": versions}, as_json, lines or ["no models yet: `labeler train`"])


def models_verify(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Argument(help="One version id (default: every version).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check model files against the checksums taken at registration.

    One line per damaged version; exit code 6 when any is damaged, 0 when all are intact.
    """
    registry = _registry(app_context(ctx))
    ids = [registry.get(version).id] if version else [v.id for v in registry.list_versions()]
    found = {vid: registry.verify(vid) for vid in ids}
    damaged = [{"id": vid, "problems": p} for vid, p in found.items() if p]
    lines = [f"damaged {d['id']}: {'; '.join(d['problems'])}" for d in damaged]
    emit(
        {"checked": len(ids), "damaged": damaged},
        as_json,
        lines or [f"{len(ids)} model version(s) checked, all intact"],
    )
    if damaged:
        raise typer.Exit(ExitCode.MODEL_DAMAGED)


def models_promote(ctx: typer.Context, version: str, as_json: JsonOpt = False) -> None:
    """Make VERSION the active model of its kind."""
    v = _registry(app_context(ctx)).promote(version, actor="labeler models promote")
    emit(_version_dict(v), as_json, [f"active {v.kind}: {v.id}"])


def models_rollback(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="detector, detector_no4 or encoder")] = "detector",
    as_json: JsonOpt = False,
) -> None:
    """Move the active pointer back to the version that served before."""
    v = _registry(app_context(ctx)).rollback(kind, actor="labeler models rollback")
    emit(_version_dict(v), as_json, [f"active {v.kind}: {v.id}"])
