"""Self-supervised pre-training of the encoder's trunk on unlabeled clips (frames.py).

`loss="ntxent"`: SimCLR's NT-Xent on two crops of each clip (pretrain_data.py). `loss="triplet"`:
Tang et al.'s hard triplet loss on P clips x K frames, clips as labels (losses.py). As in SimCLR,
the loss reads a small MLP head on the pooled features (`head_dim`), dropped afterwards: the
representation before such a head transfers better. `head_dim=None` puts the loss on the
encoder's own embedding instead.

AdamW (no weight decay on norms, biases and GeM's p) with linear warmup and cosine decay; AMP
with a gradient scaler on CUDA, fp32 on CPU with denormals flushed (they stall x86 CPUs). A
checkpoint is written atomically after every epoch; `resume=True` continues from it and, as the
crops are seeded per epoch, ends where an uninterrupted run would.

Output folder: `backbone.pt`, the trunk in torchvision's key layout, which
`EncoderConfig(backbone_weights=...)` loads to start supervised training; the whole encoder
(encoder.pt + encoder.json, checkpoint.py) with the run in its notes; `checkpoint.pt`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torchvision import models as tv_models

from ml_backend.encoder.checkpoint import save_encoder
from ml_backend.encoder.config import Backbone, EncoderConfig
from ml_backend.encoder.frames import FrameSet
from ml_backend.encoder.losses import hard_triplet_loss, nt_xent_loss
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.pretrain_data import PairMode, group_loader, pair_loader, simclr_augment
from ml_backend.training.hooks import NoHooks, NonFiniteLossError, TrainHooks

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


@dataclass
class _Run:
    config: PretrainConfig
    net: PretrainNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    device: torch.device

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


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
        raise ValueError(
            f"{len(frames.clips)} clip(s): pre-training needs 2 (others are negatives)"
        )
    hooks = hooks or NoHooks()
    augment = simclr_augment(config.encoder.crop_size)
    steps = len(_loader(frames, config, augment, 0))
    if steps == 0:
        raise ValueError("no full batch: lower --batch-size or add clips")
    run = _setup(config, device, total_steps=config.epochs * steps)
    start, losses = _load_checkpoint(out_dir, run, frames) if resume else (0, [])
    for epoch in range(start, config.epochs):
        losses.append(_epoch(run, frames, augment, epoch, steps, hooks))
        _save_checkpoint(out_dir, run, frames, epoch + 1, losses)
        hooks.on_epoch_end(epoch + 1, losses[-1])
    done = max(start, config.epochs)
    backbone = _export(run, frames, out_dir, epochs=done, losses=losses)
    return PretrainResult(out_dir, backbone, done, start, losses, steps)


def _setup(config: PretrainConfig, device: str, *, total_steps: int) -> _Run:
    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_flush_denormal(True)
    torch.manual_seed(config.seed)
    net = PretrainNet(LesionEncoder(config.encoder), config.head_dim).to(dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        _param_groups(net), lr=config.lr, weight_decay=config.weight_decay
    )
    factor = _lr_factor(config.warmup_steps, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    return _Run(config, net, optimizer, scheduler, scaler, dev)


def _param_groups(net: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels only: not on norms, biases or GeM's p."""
    params = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]


def _lr_factor(warmup: int, total: int) -> Any:
    """Linear warmup (at most a tenth of the run), then cosine decay towards zero."""
    warmup = min(warmup, total // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


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


def _epoch(
    run: _Run, frames: FrameSet, augment: Any, epoch: int, steps: int, hooks: TrainHooks
) -> float:
    """One pass; the crops are seeded by (seed, epoch) so a resumed run replays them."""
    torch.manual_seed(run.config.seed * 1000 + epoch)
    run.net.train()
    total, seen, started = 0.0, 0, time.perf_counter()
    for step, batch in enumerate(_loader(frames, run.config, augment, epoch), start=1):
        loss, n_crops = _batch_loss(run, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {float(loss.detach())} at epoch {epoch + 1} step {step}; "
                "lower the learning rate or lengthen the warmup"
            )
        _optimise(run, loss)
        value = float(loss.detach())
        total += value
        seen += n_crops
        hooks.on_step(epoch + 1, step, steps, value, seen / (time.perf_counter() - started))
    return total / steps


def _embed(run: _Run, crops: torch.Tensor) -> torch.Tensor:
    crops = crops.to(run.device, non_blocking=True)
    if run.cuda:
        crops = crops.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", enabled=run.cuda):
        z: torch.Tensor = run.net(crops)
    return z.float()  # the losses' softmax and distances in fp32


def _batch_loss(run: _Run, batch: Any) -> tuple[torch.Tensor, int]:
    c = run.config
    if c.loss == "ntxent":
        first, second = batch
        z = _embed(run, torch.cat([first, second]))
        return nt_xent_loss(z[: len(first)], z[len(first) :], temperature=c.temperature), len(z)
    crops, clips = batch
    z = _embed(run, crops)
    loss = hard_triplet_loss(z, clips.to(run.device), margin=c.margin, k_pos=c.k_pos, k_neg=c.k_neg)
    return loss, len(z)


def _optimise(run: _Run, loss: torch.Tensor) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    scaled: torch.Tensor = run.scaler.scale(loss)
    torch.autograd.backward(scaled)
    run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.net.parameters(), run.config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()


def _atomic_save(obj: Any, path: Path) -> None:
    """A kill mid-write leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as fh:  # a full disk raises OSError, not only torch's text
            torch.save(obj, fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no temp file


def _run_key(run: _Run, frames: FrameSet) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the settings (bar epochs) and the data."""
    return {
        "config": run.config.model_dump(mode="json", exclude={"epochs", "workers"}),
        "clips": [[c.clip_id, len(c.frames)] for c in frames.clips],
        "size": frames.size,
    }


def _save_checkpoint(
    out_dir: Path, run: _Run, frames: FrameSet, epoch: int, losses: list[float]
) -> None:
    state = {
        "net": run.net.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "losses": losses,
        "key": _run_key(run, frames),
    }
    _atomic_save(state, out_dir / CHECKPOINT)


def _load_checkpoint(out_dir: Path, run: _Run, frames: FrameSet) -> tuple[int, list[float]]:
    path = out_dir / CHECKPOINT
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location=run.device, weights_only=True)
    if state["key"] != _run_key(run, frames):
        raise ValueError(
            f"{path} was written with other settings or other clips; "
            "use another output folder or run without resume"
        )
    run.net.load_state_dict(state["net"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    return int(state["epoch"]), [float(x) for x in state["losses"]]


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
        raise ValueError(f"trunk keys do not match torchvision's {backbone}")
    return state


def _export(
    run: _Run, frames: FrameSet, out_dir: Path, *, epochs: int, losses: list[float]
) -> Path:
    encoder = run.net.encoder
    path = out_dir / BACKBONE
    trunk = {k: v.detach().cpu().contiguous() for k, v in encoder.trunk.state_dict().items()}
    _atomic_save(torchvision_trunk_state(trunk, run.config.encoder.backbone), path)
    notes = {
        "method": f"self-supervised pre-training ({run.config.loss})",
        "pretrain": run.config.model_dump(mode="json"),
        "data": frames.summary(),
        "skipped": [[s.path, s.reason] for s in frames.skipped[:50]],
        "epochs": epochs,
        "losses": losses,
        "backbone_weights_file": BACKBONE,
    }
    save_encoder(encoder, out_dir, notes=notes)
    return path
