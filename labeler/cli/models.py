"""Model commands: train, evaluate, predict, and the registry (list, promote, rollback).

Heavy imports (torch) happen inside the commands, so `labeler --help` and the data commands stay
fast.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.errors import ExitCode
from labeler.cli.common import JsonOpt, app_context, emit, fail
from labeler.context import AppContext
from labeler.progress import ProgressBar, train_hooks

if TYPE_CHECKING:
    from core.results import BinaryRates, Estimate, EvaluationMetrics, ValidationSummary
    from ml_backend.registry.registry import VersionInfo


class ConfigName(StrEnum):
    tiny = "tiny"  # tests and quick checks
    small = "small"
    r101_800 = "r101-800"


class PrecisionOption(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


class EvalSplit(StrEnum):
    """A split to evaluate on, or all of them (with --dataset: an external dataset whole)."""

    all = "all"
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
    backbone_weights: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Local trunk weights to start from, e.g. backbone.pt of `encoder pretrain`.",
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train in N processes with DistributedDataParallel (gloo on CPU, nccl on GPUs, "
            "one each); they split each batch, so N must divide the preset's batch size.",
        ),
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Train a detector on the train split and register it; prints the new version id."""
    from labeler.jobs.train import config_of_version, make_config, train_detector
    from labeler.launch import launch_ranks
    from ml_backend.training.distributed import joined

    if exclude_birads not in (None, "4"):
        raise fail(f"--exclude-birads only takes 4 (got {exclude_birads!r})")
    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    exclude_4 = exclude_birads == "4"
    if from_version:
        cfg = config_of_version(app_ctx, from_version, epochs=epochs)
    else:
        cfg = make_config(config.value, exclude_4=exclude_4, epochs=epochs)
    if backbone_weights is not None:
        cfg = cfg.model_copy(update={"backbone_weights": str(backbone_weights)})
    if (code := launch_ranks(nproc, cfg.train.batch_size)) is not None:
        raise typer.Exit(code)
    with joined(app_ctx.settings.device) as world, train_hooks(world.is_main) as hooks:
        out = train_detector(  # no data, a diverging loss: JobFailedError, exit 1
            app_ctx,
            config=cfg,
            exclude_4=exclude_4,
            resume=resume,
            hooks=hooks,
            init_from=from_version,
            include_reference=reference,
            world=world,
        )
    if not world.is_main:
        return  # rank 0 prints the result
    data = dataclasses.asdict(out) | {"metrics": out.metrics.model_dump(mode="json")}
    lines = [out.version_id, _validation_line(out.metrics.val)]
    emit(data, as_json, lines + ([f"promoted: {out.kind} now serves it"] if out.promoted else []))


def _validation_line(val: ValidationSummary | None) -> str:
    if val is None:
        return "  validation: no labeled image in the validation split"
    return (
        f"  validation ({val.n_images} images): mAP@0.5 {_round(val.map50)}, lesion recall@0.5 "
        f"{_round(val.lesion_recall50)}, false positives/image {_round(val.fp_per_image)}, "
        f"screening ACC {_round(val.screening_acc)}"
    )


def evaluate(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Version id (default: active detector).")
    ] = None,
    split: Annotated[
        EvalSplit, typer.Option(help="Patient-disjoint split; all: every split of --dataset.")
    ] = EvalSplit.test,
    dataset: Annotated[
        str | None,
        typer.Option(help="Only this imported dataset (e.g. an external one); default: all."),
    ] = None,
    precision: Annotated[
        PrecisionOption | None,
        typer.Option(
            help="Arithmetic to score in (default: LABELER_PRELABEL_PRECISION, the path "
            "pre-labels take); fp32: the reference.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a model on a split (Tables I-III, COCO mAP) and store it in the database.

    It scores the pre-label path readers get (`labeler predict`, /predict), in its arithmetic
    (`labeler models optimize` chooses it); the output and the stored tables name it.

    With pathology on the images, the radiologists' own BI-RADS is scored on the same images
    (AUC, SEN/SPE at >= 4 and >= 4B): the baseline the model is read against."""
    from db.models import Split
    from labeler.jobs.evaluate import evaluate_version

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with ProgressBar(f"evaluate {dataset or 'all'} {split.value}") as bar:
        result = evaluate_version(
            app_ctx,
            version_id=model,
            split=None if split is EvalSplit.all else Split(split.value),
            dataset=dataset,
            precision=precision.value if precision is not None else None,
            start=bar.start,
            advance=bar.advance,
        )
    m, d, screening = result.metrics, result.metrics.detection, result.metrics.screening
    ran_in = m.prelabel.precision if m.prelabel is not None else "fp32"
    acc = screening.rates.acc.value if screening.rates.acc is not None else None
    splits = ", ".join(f"{n} {s}" for s, n in result.by_split.items())
    lines = [
        f"{result.model} on {result.dataset} / {result.split} ({m.n_images} images; {splits}), "
        f"in {ran_in}"
        + (" (as pre-labels run)" if precision is None else f" (--precision {precision.value})"),
        f"  mAP@0.5 {d.map50}  mAP@[.5:.95] {d.map50_95}  lesion recall@0.5 "
        f"{d.lesion_recall50}  FP/image {d.fp_per_image}",
        f"  screening ACC {acc}  AUC {screening.auc}  "
        f"(plain 4 counted as {screening.plain_4_counted_as.value})",
        *_operating_lines(m),
        *_baseline_lines(m),
    ]
    if result.by_split.get(Split.TRAIN.value):
        lines.append("  note: train-split images are included; the model may have trained on them")
    emit(result.to_json(), as_json, lines)


def _operating_lines(metrics: EvaluationMetrics) -> list[str]:
    """Both readings of the model: the paper's fixed rule and the version's own threshold."""
    s, op, source = metrics.screening, metrics.screening.operating_point, metrics.prelabel
    graded = f"graded by {source.grader}" if source is not None else "graded by the detector"
    rule = f"SEN {_estimate(s.rates.sen)}  SPE {_estimate(s.rates.spe)}"
    lines = [f"  paper's fixed rule (BI-RADS >= 4B, plain 4 as configured, {graded}): {rule}"]
    if op is None:
        return [*lines, "  operating point: none (the grader has no calibrator)"]
    return [
        *lines,
        f"  operating point (P(malignant) >= {op.threshold:.3f}, chosen on the validation split "
        f"for SEN {op.target_sensitivity:.2f}): SEN {_estimate(op.rates.sen)}  "
        f"SPE {_estimate(op.rates.spe)}",
    ]


def _baseline_lines(metrics: EvaluationMetrics) -> list[str]:
    """The model against the radiologists' BI-RADS, both read against pathology."""
    base = metrics.reader_baseline
    if base is None:
        return ["  radiologists' baseline: no image with a pathology"]

    def rates(r: BinaryRates) -> str:
        return f"SEN {_estimate(r.sen)}  SPE {_estimate(r.spe)}"

    left_out = f", {base.plain_4_left_out} plain 4 left out" if base.plain_4_left_out else ""
    return [
        f"  vs pathology ({base.n_images} images, {base.n_malignant} malignant): "
        f"model AUC {_round(metrics.screening.pathology_auc)}",
        f"  radiologists' BI-RADS: AUC {_round(base.auc)}  >= 4: {rates(base.at_4)}  "
        f">= 4B: {rates(base.at_4b)}{left_out}",
    ]


def _estimate(e: Estimate | None) -> str:
    return "-" if e is None else f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]"


def _round(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def predict(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="Version id (default: active detector).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Processes decoding images while the model runs; 0: in this process "
            "(default: LABELER_PREDICT_WORKERS, else 0 on the CPU, min(2, cores - 1) beside a "
            "GPU).",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="K/N",
            help="Only the images whose id % N == K-1: N machines pre-label one pool without "
            "overlap.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pre-label every image that has no prediction from the model yet (resumable)."""
    from labeler.jobs.predict import Shard, predict_pool

    part = Shard.parse(shard) if shard is not None else None  # bad K/N: one line, exit 2
    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    with ProgressBar("pre-label") as bar:
        summary = predict_pool(
            app_ctx,
            version_id=model,
            workers=workers,
            shard=part,
            start=bar.start,
            advance=bar.advance,
        )
    data = dataclasses.asdict(summary)
    calls = Counter(im.birads for im in summary.images)
    split = sum(im.splitter is not None for im in summary.images)
    lines = [
        f"{summary.model}: {summary.predicted} images pre-labeled, "
        f"{summary.already_predicted} already were"
        + (f" (shard {summary.shard}; already: the whole pool)" if summary.shard else "")
    ]
    if calls:
        by_category = ", ".join(f"{n} BI-RADS {c}" for c, n in sorted(calls.items()))
        note = f" ({split} plain 4 split into 4A/4B)" if split else ""
        lines.append(f"  calls: {by_category}{note}")
    emit(data, as_json, lines)


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


def models_export(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The version id to export.")],
    file: Annotated[str, typer.Argument(help="The archive to write (.tar.gz).")],
    force: Annotated[bool, typer.Option(help="Overwrite FILE if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write VERSION into one checksummed archive FILE, for `labeler models import` elsewhere.

    A damaged version is refused (exit 6); FILE appears whole or not at all.
    """

    from ml_backend.registry.transfer import export_version

    out = export_version(_registry(app_context(ctx)), version, Path(file), force=force)
    mib = out.bytes / 2**20
    emit(
        dataclasses.asdict(out),
        as_json,
        [
            f"exported {out.id} to {out.file} ({out.files} files, {mib:.1f} MiB), "
            f"sha256 {out.sha256}"
        ],
    )


def models_import(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="An archive written by `labeler models export`.")],
    as_json: JsonOpt = False,
) -> None:
    """Check every file of an exported model against its checksum, then register it.

    The version keeps its id and is not made active: `labeler models promote VERSION` does that.
    """

    from ml_backend.registry.transfer import import_version

    out = import_version(_registry(app_context(ctx)), Path(file))
    if out.status == "already_present":
        line = f"{out.id} is already present; nothing changed"
    else:
        line = f"imported {out.id} ({out.kind}, {out.files} files)"
        if out.parent is not None and not out.parent_linked:
            line += f"; its parent {out.parent} is not in this home"
    if not out.active:
        line += f"; not active: `labeler models promote {out.id}` serves it"
    emit(dataclasses.asdict(out), as_json, [line])
