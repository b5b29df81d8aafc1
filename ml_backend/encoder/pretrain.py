"""Self-supervised pre-training of the encoder's trunk on unlabeled clips (frames.py).

`loss="ntxent"`: SimCLR's NT-Xent on two crops of each clip (pretrain_data.py). `loss="triplet"`:
Tang et al.'s hard triplet loss on P clips x K frames, clips as labels (losses.py). As in SimCLR,
the loss reads a small MLP head on the pooled features (`head_dim`), dropped afterwards: the
representation before such a head transfers better. `head_dim=None` puts the loss on the
encoder's own embedding instead.

AdamW (no weight decay on norms, biases and GeM's p) on the shared engine
(ml_backend/training/engine.py): linear warmup (at most a tenth of the run), then cosine decay
towards zero; fp16 AMP with a gradient scaler on CUDA, fp32 on CPU. A checkpoint is written
atomically after every epoch; `resume=True` continues from it and, as the crops are seeded per
epoch, ends where an uninterrupted run would.

Output folder: `backbone.pt`, the trunk in torchvision's key layout, which
`EncoderConfig(backbone_weights=...)` loads to start supervised training; the whole encoder
(encoder.pt + encoder.json, checkpoint.py) with the run in its notes; `checkpoint.pt`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torchvision import models as tv_models

from core.errors import BadInputError, JobFailedError
from ml_backend.encoder.checkpoint import save_encoder
from ml_backend.encoder.config import Backbone, EncoderConfig
from ml_backend.encoder.frames import FrameSet
from ml_backend.encoder.losses import hard_triplet_loss, nt_xent_loss
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.pretrain_data import PairMode, group_loader, pair_loader, simclr_augment
from ml_backend.encoder.train import param_groups
from ml_backend.training.engine import Checkpoint, Engine, FitConfig, Schedule, atomic_torch_save
from ml_backend.training.hooks import TrainHooks

BACKBONE = "backbone.pt"
CHECKPOINT = "checkpoint.pt"
_HEADS = ("fc.", "classifier.")  # torchvision's ImageNet heads: not part of the trunk


class PretrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    loss: Literal["ntxent", "triplet"] = "ntxent"
    encoder: EncoderConfig = EncoderConfig()
    epochs: int = Field(20, ge=1)
    max_frames: int = Field(16, ge=1)  # per clip, spread evenly (frames.load_frames)
    pair: PairMode = "frames"  # NT-Xent positives: two frames of a clip, or two views of one
    batch_size: int = Field(32, ge=2)  # NT-Xent: clips per batch (2x crops)
    clips_per_batch: int = Field(8, ge=2)  # triplet: P
    frames_per_clip: int = Field(4, ge=1)  # triplet: K
    temperature: float = Field(0.5, gt=0)
    margin: float = Field(0.5, ge=0)
    k_pos: int = Field(3, ge=1)
    k_neg: int = Field(12, ge=1)
    head_dim: int | None = Field(128, ge=2)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(100, ge=0)  # capped at a tenth of the run
    grad_clip: float = Field(5.0, gt=0)
    seed: int = 0
    workers: int = Field(0, ge=0)


@dataclass(frozen=True)
class PretrainResult:
    out_dir: Path
    backbone_path: Path
    epochs_done: int
    resumed_from: int  # epochs already done when this call started
    losses: list[float]  # mean loss per epoch, the resumed epochs included
    steps_per_epoch: int


class PretrainNet(nn.Module):
    """The encoder plus the throw-away projection head the loss reads."""

    def __init__(self, encoder: LesionEncoder, head_dim: int | None) -> None:
        super().__init__()
        self.encoder = encoder
        features = encoder.classifier.in_features
        self.head: nn.Module | None = None
        if head_dim is not None:
            self.head = nn.Sequential(
                nn.Linear(features, features), nn.ReLU(), nn.Linear(features, head_dim)
            )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            embedding: torch.Tensor = self.encoder(crops).embedding
            return embedding
        pooled = self.encoder.pool(self.encoder.trunk(crops))
        projected: torch.Tensor = self.head(pooled)
        return projected


class PretrainTask:
    """Pre-training's part of a run: crops of the clips seeded per epoch, one named loss."""

    def __init__(self, net: PretrainNet, frames: FrameSet, config: PretrainConfig) -> None:
        self.model, self.frames, self.config = net, frames, config
        self.device = next(net.parameters()).device
        self.augment = simclr_augment(config.encoder.crop_size)
        self.steps_per_epoch = len(_loader(frames, config, self.augment, 0))

    def optimizer(self) -> torch.optim.Optimizer:
        groups = param_groups(self.model, self.config.weight_decay)
        return torch.optim.AdamW(groups, lr=self.config.lr)

    def batches(self, epoch: int) -> Iterator[tuple[Any, int]]:
        for batch in _loader(self.frames, self.config, self.augment, epoch):
            crops = len(batch[0]) * (2 if self.config.loss == "ntxent" else 1)
            yield batch, crops

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The embeddings (projected by the head) of every crop in the batch."""
        crops = torch.cat(batch) if self.config.loss == "ntxent" else batch[0]
        crops = crops.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            crops = crops.contiguous(memory_format=torch.channels_last)
        z: torch.Tensor = model(crops)
        return z

    def losses(self, out: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        z, c = out.float(), self.config  # the losses' softmax and distances in fp32
        if c.loss == "ntxent":
            half = len(batch[0])
            return {"ntxent": nt_xent_loss(z[:half], z[half:], temperature=c.temperature)}
        clips = batch[1].to(self.device)
        loss = hard_triplet_loss(z, clips, margin=c.margin, k_pos=c.k_pos, k_neg=c.k_neg)
        return {"triplet": loss}


def pretrain(
    frames: FrameSet,
    config: PretrainConfig,
    *,
    out_dir: Path,
    resume: bool = False,
    device: str = "cpu",
    hooks: TrainHooks | None = None,
) -> PretrainResult:
    """Train, checkpoint every epoch, then write backbone.pt and the encoder into `out_dir`."""
    if len(frames.clips) < 2:
        raise JobFailedError(
            f"{len(frames.clips)} clip(s): pre-training needs 2 (others are negatives)"
        )
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    task = PretrainTask(
        PretrainNet(LesionEncoder(config.encoder), config.head_dim).to(dev), frames, config
    )
    steps = task.steps_per_epoch
    if steps == 0:
        raise JobFailedError("no full batch: lower --batch-size or add clips")
    warmup = min(config.warmup_steps, config.epochs * steps // 10)
    fit = FitConfig(
        epochs=config.epochs,
        schedule=Schedule(warmup=warmup, start=1 / (warmup + 1), final=0.0),
        grad_clip=config.grad_clip,
        seed=config.seed,
        amp=torch.float16,
    )
    engine = Engine(task, fit, device=dev, hooks=() if hooks is None else [hooks])
    checkpoint = Checkpoint(out_dir / CHECKPOINT, key=_run_key(config, frames))
    result = engine.fit(checkpoint, resume=resume)
    done = max(result.resumed_from, config.epochs)
    backbone = _export(
        task.model.encoder, config, frames, out_dir, epochs=done, losses=result.losses
    )
    return PretrainResult(out_dir, backbone, done, result.resumed_from, result.losses, steps)


def _loader(frames: FrameSet, config: PretrainConfig, augment: Any, epoch: int) -> Any:
    if config.loss == "ntxent":
        return pair_loader(
            frames,
            augment,
            pair=config.pair,
            batch_size=config.batch_size,
            seed=config.seed * 1000 + epoch,
            workers=config.workers,
        )
    return group_loader(
        frames,
        augment,
        clips_per_batch=config.clips_per_batch,
        frames_per_clip=config.frames_per_clip,
        seed=config.seed,
        epoch=epoch,
        workers=config.workers,
    )


def _run_key(config: PretrainConfig, frames: FrameSet) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the settings (bar epochs) and the data."""
    return {
        "config": config.model_dump(mode="json", exclude={"epochs", "workers"}),
        "clips": [[c.clip_id, len(c.frames)] for c in frames.clips],
        "size": frames.size,
    }


def torchvision_trunk_state(
    trunk_state: dict[str, torch.Tensor], backbone: Backbone
) -> dict[str, torch.Tensor]:
    """The trunk's state under torchvision's own names (model.build_trunk, reversed)."""
    with torch.device("meta"):  # names only: no memory, no initialisation
        reference = getattr(tv_models, backbone)(weights=None)
    if backbone == "densenet121":
        names = {"0": "features"}  # trunk = Sequential(features, ReLU)
    else:
        children = [name for name, _ in reference.named_children()][:-2]
        names = {str(i): name for i, name in enumerate(children)}
    state: dict[str, torch.Tensor] = {}
    for key, value in trunk_state.items():
        index, rest = key.split(".", 1)
        state[f"{names.get(index, index)}.{rest}"] = value
    expected = {k for k in reference.state_dict() if not k.startswith(_HEADS)}
    if set(state) != expected:
        raise BadInputError(f"trunk keys do not match torchvision's {backbone}")
    return state


def _export(
    encoder: LesionEncoder,
    config: PretrainConfig,
    frames: FrameSet,
    out_dir: Path,
    *,
    epochs: int,
    losses: list[float],
) -> Path:
    path = out_dir / BACKBONE
    trunk = {k: v.detach().cpu().contiguous() for k, v in encoder.trunk.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(torchvision_trunk_state(trunk, config.encoder.backbone), path)
    notes = {
        "method": f"self-supervised pre-training ({config.loss})",
        "pretrain": config.model_dump(mode="json"),
        "data": frames.summary(),
        "skipped": [[s.path, s.reason] for s in frames.skipped[:50]],
        "epochs": epochs,
        "losses": losses,
        "backbone_weights_file": BACKBONE,
    }
    save_encoder(encoder, out_dir, notes=notes)
    return path
