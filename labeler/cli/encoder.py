"""`labeler encoder ...`: train, pre-train and index the lesion encoder (ml_backend/encoder)."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from labeler.cli.common import JsonOpt, app_context, emit, fail
from labeler.progress import TrainProgress

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
        Path, typer.Argument(help="Videos, frame folders or images, under LABELER_DATA_ROOT.")
    ],
    loss: Annotated[
        PretrainLoss, typer.Option(help="ntxent (SimCLR) or triplet (hard triplet, clip labels).")
    ],
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
    """Self-supervised pre-training on unlabeled clips; writes backbone.pt for backbone_weights."""
    from labeler.importing.paths import OutsideDataRootError
    from labeler.jobs.pretrain import NoClipsError, pretrain_folder
    from ml_backend.encoder.frames import VideoDecoderMissingError
    from ml_backend.encoder.pretrain import NonFiniteLossError

    refused = (OutsideDataRootError, NotADirectoryError, NoClipsError, VideoDecoderMissingError)
    try:
        with TrainProgress() as hooks:
            done = pretrain_folder(
                app_context(ctx),
                folder,
                loss=loss.value,
                backbone=backbone.value,
                epochs=epochs,
                crop_size=crop_size,
                max_frames=max_frames,
                out=out,
                resume=resume,
                hooks=hooks,
            )
    except refused as exc:
        raise fail(str(exc)) from None
    except (NonFiniteLossError, ValueError) as exc:
        raise fail(str(exc), code=1) from None
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
