"""Train a Faster R-CNN: checkpoint every epoch (atomically), resume after a kill, stop on NaN.

fp32 on CPU (no native bf16 here: autocast is slower); AMP + channels_last on CUDA.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ml_backend.detector.config import DetectorConfig
from ml_backend.detector.data import DetectionDataset, Sample, collate
from ml_backend.detector.frcnn import WEIGHTS, FasterRCNNDetector
from ml_backend.training.hooks import NoHooks, NonFiniteLossError, TrainHooks

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainResult:
    detector: FasterRCNNDetector
    epochs_done: int
    resumed_from: int  # epochs already done when this call started
    losses: list[float]  # mean loss per epoch trained in this call


def train(
    config: DetectorConfig,
    samples: Sequence[Sample],
    *,
    home: Path,
    work_dir: Path,
    resume: bool = False,
    device: str = "cpu",
    hooks: TrainHooks | None = None,
    init_from: Path | None = None,
) -> TrainResult:
    """`init_from`: a registered version's folder to fine-tune from (same label space)."""
    hooks = hooks or NoHooks()
    tc = config.train
    torch.manual_seed(tc.seed)
    detector = FasterRCNNDetector(config, device=device)
    model = detector.model
    if init_from is not None:
        state = torch.load(init_from / WEIGHTS, map_location=detector.device, weights_only=True)
        model.load_state_dict(state)
    cuda = detector.device.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
    dataset = DetectionDataset(
        samples, home, size=config.image_size, box_categories=config.box_categories, augment=True
    )
    steps = math.ceil(len(dataset) / tc.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(tc.warmup_iters, tc.epochs * steps)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    start = _load_checkpoint(work_dir, config, model, optimizer, scheduler) if resume else 0
    losses: list[float] = []
    for epoch in range(start, tc.epochs):
        loader = DataLoader(
            dataset,
            batch_size=tc.batch_size,
            shuffle=True,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(tc.seed * 1000 + epoch),  # same order on resume
        )
        model.train()
        total, started = 0.0, time.perf_counter()
        for step, (images, targets) in enumerate(loader, start=1):
            images = [i.to(detector.device) for i in images]
            targets = [{k: v.to(detector.device) for k, v in t.items()} for t in targets]
            with torch.autocast("cuda", enabled=cuda):
                loss_dict = model(images, targets)
                loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                parts = {k: round(float(v.detach()), 4) for k, v in loss_dict.items()}
                raise NonFiniteLossError(
                    f"loss became {float(loss.detach())} at epoch {epoch + 1} step {step} "
                    f"({parts}); lower the learning rate or lengthen the warmup"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            value = float(loss.detach())
            total += value
            seen = min(step * tc.batch_size, len(dataset))
            hooks.on_step(epoch + 1, step, steps, value, seen / (time.perf_counter() - started))
        losses.append(total / max(steps, 1))
        _save_checkpoint(work_dir, config, model, optimizer, scheduler, epoch + 1)
        hooks.on_epoch_end(epoch + 1, losses[-1])
    return TrainResult(detector, epochs_done=tc.epochs, resumed_from=start, losses=losses)


def _schedule(warmup: int, total: int) -> Any:
    """Linear warmup (random init needs it), then cosine decay to 5% of the base rate."""

    def factor(it: int) -> float:
        if it < warmup:
            return 0.001 + (1 - 0.001) * it / warmup
        progress = (it - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _save_checkpoint(
    work_dir: Path,
    config: DetectorConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "config": config.model_dump(mode="json"),
    }
    atomic_torch_save(state, work_dir / CHECKPOINT)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write through a temp file and rename: a kill mid-write leaves the previous file, and a
    failed write (disk full) removes its temp file. The file handle is Python's, so a full disk
    surfaces as OSError(ENOSPC) (the context of torch's RuntimeError), not only as torch's text."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_checkpoint(
    work_dir: Path,
    config: DetectorConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> int:
    path = work_dir / CHECKPOINT
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != config.model_dump(mode="json"):
        raise ValueError(f"{path} was written with a different config; start a new run instead")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"])
