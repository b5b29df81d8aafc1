"""One training loop for the detector, the encoder and its pre-training.

In the spirit of detectron2's trainer and torchvision's references/detection: a model supplies a
`TrainTask` (its model and optimizer, one epoch's batches, the named loss parts of a batch) and
the engine owns the rest: linear warmup then cosine decay (torch.optim.lr_scheduler), AMP
(autocast on CUDA, a gradient scaler where fp16 needs one), channels_last on CUDA, gradient
clipping, the stop on a non-finite loss, an atomic checkpoint after every epoch and the hooks.

Under torchrun (a `World` of several processes) the model is wrapped in DistributedDataParallel,
so gradients are averaged over the processes; each task feeds its process its share of every
global batch. The logged loss is the mean over the processes, rank 0 alone writes checkpoints and
runs the hooks, and a resumed run may use another process count: the checkpoint holds the
unwrapped model and the schedule counts global steps. On CUDA, BatchNorm becomes SyncBatchNorm;
on CPU (gloo, where SyncBatchNorm does not run) each process normalises over its own share.

Each epoch reseeds torch's global RNG (seed * 1000 + epoch), so a run resumed from the checkpoint
of epoch k draws the same augmentations and samples as an uninterrupted run and ends with the
same weights.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from core.errors import JobFailedError
from ml_backend.training.distributed import SINGLE, World
from ml_backend.training.hooks import EpochInfo, NonFiniteLossError, StepInfo, TrainHooks

FORMAT = 2  # checkpoints of the per-model loops (LambdaLR schedules) do not resume here
Batch = TypeVar("Batch")
Out = TypeVar("Out")


class CheckpointMismatchError(JobFailedError):
    """`--resume` found a checkpoint of another run (format, config, data or epoch count)."""


class TrainTask(Protocol[Batch, Out]):
    """What a model supplies; `forward` runs under autocast (with `model`, the task's model or its
    DistributedDataParallel wrapper), `losses` after it, in fp32; `batches` yields this process's
    share of each global batch."""

    @property
    def model(self) -> nn.Module: ...
    @property
    def steps_per_epoch(self) -> int: ...
    def optimizer(self) -> torch.optim.Optimizer: ...
    def batches(self, epoch: int) -> Iterable[tuple[Batch, int]]:
        """Epoch `epoch` (from 0): each batch with the number of images in it."""
        ...

    def forward(self, model: nn.Module, batch: Batch) -> Out: ...
    def losses(self, out: Out, batch: Batch) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Schedule:
    """Linear warmup from `start` x the base rate, then cosine decay to `final` x the base rate."""

    warmup: int
    start: float = 0.001
    final: float = 0.05


@dataclass(frozen=True)
class FitConfig:
    epochs: int
    schedule: Schedule
    grad_clip: float
    seed: int
    amp: torch.dtype | None = None  # autocast dtype (CUDA only); float16 adds a GradScaler


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    key: Any  # JSON-like settings (and data) a resumed run must match


@dataclass(frozen=True)
class FitResult:
    resumed_from: int  # epochs already done when this call started
    losses: list[float]  # mean train loss per epoch, the resumed epochs included
    parts: list[dict[str, float]]  # mean of each named loss part per epoch


def warmup_cosine(optimizer: torch.optim.Optimizer, schedule: Schedule, total: int) -> LRScheduler:
    """Stepped once per optimisation step; `total` steps in all."""
    final = schedule.final * float(optimizer.param_groups[0]["lr"])  # the groups share one rate
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total - schedule.warmup), eta_min=final)
    if schedule.warmup == 0:
        return cosine
    warmup = LinearLR(optimizer, schedule.start, 1.0, total_iters=schedule.warmup)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[schedule.warmup])


class Engine:
    def __init__(
        self,
        task: TrainTask[Any, Any],
        config: FitConfig,
        *,
        device: torch.device,
        hooks: Sequence[TrainHooks] = (),
        world: World = SINGLE,
    ) -> None:
        self.task, self.config, self.device, self.world = task, config, device, world
        self.hooks = hooks if world.is_main else ()
        if device.type == "cuda":
            task.model.to(memory_format=torch.channels_last)
        self.module = _wrapped(task.model, device, world)
        self.optimizer = task.optimizer()
        total = config.epochs * task.steps_per_epoch
        self.scheduler = warmup_cosine(self.optimizer, config.schedule, total)
        self.amp = config.amp if device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def fit(self, checkpoint: Checkpoint | None = None, *, resume: bool = False) -> FitResult:
        start, losses, parts = 0, list[float](), list[dict[str, float]]()
        if resume and checkpoint is not None:
            start, losses, parts = self._restore(checkpoint)
        for epoch in range(start, self.config.epochs):
            torch.manual_seed(self.config.seed * 1000 + epoch)
            self.module.train()
            loss, means = self._epoch(epoch + 1)
            losses.append(loss)
            parts.append(means)
            if checkpoint is not None and self.world.is_main:
                self._save(checkpoint, epoch + 1, losses, parts)
            self.world.barrier()  # no process runs ahead of the last checkpoint
            saved = checkpoint.path if checkpoint is not None else None
            info = EpochInfo(epoch + 1, self.config.epochs, loss, means, saved)
            for hook in self.hooks:
                hook.after_epoch(info)
        return FitResult(start, losses, parts)

    def _epoch(self, epoch: int) -> tuple[float, dict[str, float]]:
        """Epoch `epoch` (from 1): the mean loss and the mean of each part."""
        steps, sums = self.task.steps_per_epoch, defaultdict[str, float](float)
        seen, done, started = 0, 0, time.perf_counter()
        for done, (batch, size) in enumerate(self.task.batches(epoch - 1), start=1):
            for hook in self.hooks:
                hook.before_step(epoch, done, steps)
            lr = float(self.optimizer.param_groups[0]["lr"])
            total, parts = self._step(batch, epoch, done)
            sums["loss"] += total
            for key, value in parts.items():
                sums[key] += value
            seen += size * self.world.size  # every process takes an equal share
            rate = seen / (time.perf_counter() - started)
            info = StepInfo(epoch, done, steps, total, parts, lr, rate)
            for hook in self.hooks:
                hook.after_step(info)
        means = {k: v / max(done, 1) for k, v in sums.items()}
        return means.pop("loss", math.nan), means

    def _step(self, batch: Any, epoch: int, step: int) -> tuple[float, dict[str, float]]:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.task.forward(self.module, batch)
        terms = self.task.losses(out, batch)
        loss: torch.Tensor = functools.reduce(operator.add, terms.values())
        values = torch.stack([loss.detach().float(), *(t.detach().float() for t in terms.values())])
        values = self.world.mean(values)  # every process sees the same loss and stops together
        total, *rest = values.tolist()  # one device sync for the NaN check and the log
        parts = dict(zip(terms, rest, strict=True))
        if not math.isfinite(total):
            shown = {k: round(v, 4) for k, v in parts.items()}
            raise NonFiniteLossError(
                f"loss became {total} at epoch {epoch} step {step} ({shown}); "
                "lower the learning rate or lengthen the warmup"
            )
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(self.scaler.scale(loss))
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.task.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return total, parts

    def _save(
        self, checkpoint: Checkpoint, epoch: int, losses: list[float], parts: list[dict[str, float]]
    ) -> None:
        checkpoint.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": FORMAT,
            "model": self.task.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "epochs": self.config.epochs,
            "losses": losses,
            "parts": parts,
            "config": checkpoint.key,
        }
        atomic_torch_save(state, checkpoint.path)

    def _restore(self, checkpoint: Checkpoint) -> tuple[int, list[float], list[dict[str, float]]]:
        """The epochs done and their losses; 0 and none without a checkpoint file."""
        path = checkpoint.path
        if not path.exists():
            return 0, [], []
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("format") != FORMAT:
            raise CheckpointMismatchError(
                f"{path} was written by an older version; start a new run instead"
            )
        if state["config"] != checkpoint.key:
            raise CheckpointMismatchError(
                f"{path} was written with a different config or data; start a new run instead "
                "(without resume, or in another folder)"
            )
        if state["epochs"] != self.config.epochs:
            raise CheckpointMismatchError(
                f"{path} is a run of {state['epochs']} epochs and its learning-rate schedule "
                "spans them: resume it with as many epochs, or start a new run"
            )
        self.task.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        losses = [float(x) for x in state["losses"]]
        parts = [{k: float(v) for k, v in p.items()} for p in state["parts"]]
        return int(state["epoch"]), losses, parts


def _wrapped(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """`model` itself in one process; else DistributedDataParallel over it (which broadcasts
    rank 0's weights, so every process starts alike)."""
    if not world.distributed:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        return DistributedDataParallel(model, device_ids=[device])
    return DistributedDataParallel(model)


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
