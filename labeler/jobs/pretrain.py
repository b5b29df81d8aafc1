"""Self-supervised pre-training of the encoder trunk on a folder of unlabeled clips, or on the
site's own stored images (`pretrain_site`).

The folder must lie under LABELER_DATA_ROOT, like every import. The output folder (by default
`LABELER_HOME/pretrain/<folder>-<loss>-<backbone>`, so `--resume` finds it again) holds
`backbone.pt`, which `EncoderConfig(backbone_weights=...)` loads to start supervised training,
and the whole encoder. It is not registered: a pre-trained trunk has no trained heads to serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import BadInputError
from db.models import Split
from db.queries import images as image_queries
from labeler.context import AppContext
from labeler.importing.paths import NotAFolderError, display_path, ensure_inside
from ml_backend.encoder.frames import FrameSet, load_frames, load_images
from ml_backend.encoder.pretrain import PretrainConfig, pretrain
from ml_backend.training.hooks import TrainHooks


class NoClipsError(BadInputError):
    """Fewer than two readable clips under the folder."""


@dataclass(frozen=True)
class PretrainOutcome:
    folder: str
    out_dir: str
    backbone_weights: str
    loss: str
    backbone: str
    device: str
    epochs: int
    resumed_from: int
    losses: list[float]
    data: dict[str, Any]  # clips, frames, by kind, skipped count
    skipped: list[dict[str, str]]  # the first few, path and reason


def default_out(home: Path, folder: Path, loss: str, backbone: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-") or "data"
    return home / "pretrain" / f"{slug}-{loss}-{backbone}"


def pretrain_folder(
    app: AppContext,
    folder: Path,
    *,
    loss: str,
    backbone: str = "resnet18",
    epochs: int = 20,
    crop_size: int = 224,
    max_frames: int = 16,
    out: Path | None = None,
    resume: bool = False,
    device: str | None = None,
    hooks: TrainHooks | None = None,
) -> PretrainOutcome:
    """Load the clips under `folder`, pre-train, write the output folder; see the docstring."""
    root = app.settings.data_root
    resolved = ensure_inside(folder, root)
    shown = display_path(resolved, root)
    if not resolved.is_dir():
        raise NotAFolderError(f"{shown} is not a folder")
    config = _config(loss, backbone, epochs, crop_size, max_frames)
    frames = load_frames(resolved, size=crop_size, max_frames=max_frames)
    out_dir = out or default_out(app.settings.home, resolved, loss, backbone)
    return _run(frames, shown, config, out_dir, resume=resume, device=device, hooks=hooks)


SITE = "site"  # what `pretrain_site` names its data


def pretrain_site(
    app: AppContext,
    *,
    loss: str = "ntxent",
    backbone: str = "resnet18",
    epochs: int = 20,
    crop_size: int = 224,
    out: Path | None = None,
    resume: bool = False,
    device: str | None = None,
    hooks: TrainHooks | None = None,
) -> PretrainOutcome:
    """Pre-train on every image the site has stored, the unlabeled pool included, each image
    its own clip (SimCLR: two augmented views are the positive pair). The test split is left
    out: no model may have seen its pixels, labeled or not, before it is scored there.
    `backbone.pt` initialises the detector (`labeler train --backbone-weights`) and the encoder
    (`labeler encoder train --backbone-weights`): both are torchvision ResNets."""
    with app.sessions() as session:
        paths = image_queries.png_paths(session, exclude_split=Split.TEST)
    frames = load_images(app.settings.home, paths, size=crop_size)
    config = _config(loss, backbone, epochs, crop_size, 1)
    out_dir = out or app.settings.home / "pretrain" / f"{SITE}-{loss}-{backbone}"
    return _run(frames, SITE, config, out_dir, resume=resume, device=device, hooks=hooks)


def _config(
    loss: str, backbone: str, epochs: int, crop_size: int, max_frames: int
) -> PretrainConfig:
    encoder = {"backbone": backbone, "crop_size": crop_size}
    return PretrainConfig.model_validate(  # a bad name or size is a ValidationError
        {"loss": loss, "encoder": encoder, "epochs": epochs, "max_frames": max_frames}
    )


def _run(
    frames: FrameSet,
    shown: str,
    config: PretrainConfig,
    out_dir: Path,
    *,
    resume: bool,
    device: str | None,
    hooks: TrainHooks | None,
) -> PretrainOutcome:
    if len(frames.clips) < 2:
        raise NoClipsError(
            f"{shown}: {len(frames.clips)} readable clip(s), {len(frames.skipped)} skipped; "
            "pre-training needs at least 2 (videos, frame folders or images)"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = pretrain(frames, config, out_dir=out_dir, resume=resume, device=device, hooks=hooks)
    return PretrainOutcome(
        folder=shown,
        out_dir=str(result.out_dir),
        backbone_weights=str(result.backbone_path),
        loss=config.loss,
        backbone=config.encoder.backbone,
        device=device,
        epochs=result.epochs_done,
        resumed_from=result.resumed_from,
        losses=[round(x, 6) for x in result.losses],
        data=frames.summary(),
        skipped=[{"path": s.path, "reason": s.reason} for s in frames.skipped[:20]],
    )
