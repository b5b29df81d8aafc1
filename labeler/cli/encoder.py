"""`labeler encoder ...`: train, pre-train and index the lesion encoder (ml_backend/encoder)."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from core.results import EncoderScores
from labeler.cli.common import JsonOpt, app_context, emit, fail
from labeler.progress import TrainProgress, train_hooks

encoder_app = typer.Typer(
    help="Lesion encoder: train, self-supervised pre-training, similar-lesion index.",
    no_args_is_help=True,
)


class PretrainLoss(StrEnum):
    ntxent = "ntxent"
    triplet = "triplet"


class PretrainBackbone(StrEnum):
    resnet18 = "resnet18"
    resnet50 = "resnet50"
    densenet121 = "densenet121"


@encoder_app.command()
def pretrain(
    ctx: typer.Context,
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="Videos, frame folders or images, under LABELER_DATA_ROOT; default: every "
            "image in the database but the test split's (the site's own, unlabeled included)."
        ),
    ] = None,
    loss: Annotated[
        PretrainLoss, typer.Option(help="ntxent (SimCLR) or triplet (hard triplet, clip labels).")
    ] = PretrainLoss.ntxent,
    backbone: Annotated[PretrainBackbone, typer.Option()] = PretrainBackbone.resnet18,
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    crop_size: Annotated[int, typer.Option(min=32, help="Frames are resized to this.")] = 224,
    max_frames: Annotated[int, typer.Option(min=1, help="Per clip, spread evenly.")] = 16,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: LABELER_HOME/pretrain/...).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the output's checkpoint.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Self-supervised pre-training; writes backbone.pt, which `labeler train` and `labeler
    encoder train` take as --backbone-weights (the detector and the encoder share the trunk)."""
    from labeler.jobs.pretrain import pretrain_folder, pretrain_site

    if folder is None and loss is PretrainLoss.triplet:
        raise fail("--loss triplet needs clips (a FOLDER); the site's images pre-train with ntxent")
    # a refused folder, too few clips, no video decoder: BadInputError (exit 2); a diverging
    # loss: JobFailedError (exit 1)
    app_ctx = app_context(ctx)
    options: dict[str, Any] = {
        "loss": loss.value,
        "backbone": backbone.value,
        "epochs": epochs,
        "crop_size": crop_size,
        "out": out,
        "resume": resume,
    }
    with TrainProgress() as hooks:
        if folder is None:
            app_ctx.require_schema()
            done = pretrain_site(app_ctx, hooks=hooks, **options)
        else:
            done = pretrain_folder(app_ctx, folder, max_frames=max_frames, hooks=hooks, **options)
    data = done.data
    emit(
        dataclasses.asdict(done),
        as_json,
        [
            f"{done.backbone} pre-trained with {done.loss} on {done.folder}: {data['clips']} "
            f"clips, {data['frames']} frames, {data['skipped']} files skipped",
            f"  epochs {done.epochs} (resumed after {done.resumed_from}), losses {done.losses}",
            f"  backbone weights: {done.backbone_weights}",
        ],
    )


class TrainMethod(StrEnum):
    baseline = "baseline"
    lr = "lr"
    ir = "ir"
    lr_entropy = "lr_entropy"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _summary(scores: EncoderScores | None) -> list[str]:
    """Held-out scores in two lines (counts and rates only: no patient or lesion keys)."""
    if scores is None:
        return ["  nothing held out to score"]
    values = (scores.auc, scores.acc, scores.sen, scores.spe, scores.mcr)
    rates = "  ".join(
        f"{k} {_fmt(v)}" for k, v in zip(("AUC", "ACC", "SEN", "SPE", "MCR"), values, strict=True)
    )
    maps = "  ".join(f"{k} {_fmt(v.map_at_10)}" for k, v in scores.retrieval.items())
    return [f"  {scores.n_images} images: {rates}", f"  retrieval mAP@10: {maps}"]


@encoder_app.command("train")
def train(
    ctx: typer.Context,
    method: Annotated[
        TrainMethod, typer.Option(help="baseline (CE), lr (CE + LR), ir (CE + IR), lr_entropy.")
    ] = TrainMethod.lr,
    backbone: Annotated[PretrainBackbone, typer.Option()] = PretrainBackbone.resnet18,
    backbone_weights: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Local trunk weights, e.g. from `encoder pretrain`."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training lesions.")] = 30,
    fold: Annotated[
        int | None, typer.Option(min=1, help="Hold out this fold (default: the test split).")
    ] = None,
    crop_size: Annotated[int, typer.Option(min=32)] = 224,
    lesions_per_batch: Annotated[int, typer.Option(min=2, help="P of P x K.")] = 8,
    views_per_lesion: Annotated[int, typer.Option(min=1, help="K of P x K.")] = 8,
    birads_head: Annotated[
        bool,
        typer.Option(help="Shi et al.'s BI-RADS regression head: the grader's BI-RADS estimate."),
    ] = True,
    seed: Annotated[int, typer.Option()] = 0,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train in N processes with DistributedDataParallel; each takes P/N lesions of "
            "every batch, so N must divide --lesions-per-batch.",
        ),
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Train the lesion encoder on the labeled lesions, score it on held-out data, register it."""
    from labeler.jobs.encoder import train_encoder_version
    from labeler.launch import launch_ranks
    from ml_backend.encoder.config import EncoderConfig
    from ml_backend.encoder.train import EncoderTrainConfig
    from ml_backend.training.distributed import joined

    app_ctx = app_context(ctx)
    app_ctx.ensure_schema()
    weights = str(backbone_weights) if backbone_weights else None
    model_config = EncoderConfig(
        backbone=backbone.value,
        backbone_weights=weights,
        crop_size=crop_size,
        birads_head=birads_head,
    )
    train_config = EncoderTrainConfig(
        method=method.value,
        epochs=epochs,
        lesions_per_batch=lesions_per_batch,
        views_per_lesion=views_per_lesion,
        seed=seed,
    )
    if (code := launch_ranks(nproc, lesions_per_batch)) is not None:
        raise typer.Exit(code)
    # too few lesions, bad trunk weights: BadInputError (exit 2); a diverging loss: exit 1
    with joined(app_ctx.settings.device) as world, train_hooks(world.is_main) as hooks:
        out = train_encoder_version(
            app_ctx,
            model_config,
            train_config,
            fold=fold,
            hooks=hooks,
            log=(lambda line: typer.echo(line, err=True)) if world.is_main else lambda _: None,
            world=world,
        )
    if not world.is_main:
        return  # rank 0 prints the result
    lines = [f"{out.version_id}  {out.method} on {out.n_train_images} images, {out.held_out}:"]
    lines += _summary(out.metrics.scores)
    if out.threshold is not None:
        lines.append(
            f"  calibrated on {out.calibrated_on} validation lesions: P(malignant) >= "
            f"{out.threshold:.3f} is the operating point"
        )
    else:
        lines.append("  not calibrated: the validation split lacks benign or malignant lesions")
    if out.promoted:
        lines.append("promoted: now the active encoder")
    emit(dataclasses.asdict(out) | {"metrics": out.metrics.model_dump(mode="json")}, as_json, lines)
