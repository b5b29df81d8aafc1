"""A rich progress bar on stderr, so --json output on stdout stays clean."""

from __future__ import annotations

import math
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ml_backend.training.hooks import EpochInfo, StepInfo, TrainHooks


class _LiveBar:
    """A rich bar that runs while the `with` block does."""

    _bar: Progress

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()


class ProgressBar(_LiveBar):
    def __init__(self, description: str) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._description = description
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        self._task = self._bar.add_task(self._description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)


class TrainProgress(_LiveBar, TrainHooks):
    """Engine hooks drawn as one bar per epoch with the train loss and images/s, and one line per
    epoch with the mean train loss and each of its named parts."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("train loss {task.fields[loss]:.3f}  {task.fields[ips]:.2f} img/s"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task: TaskID | None = None

    def before_step(self, epoch: int, step: int, steps: int) -> None:
        if self._task is None or step == 1:
            self._task = self._bar.add_task("", total=steps, epoch=epoch, loss=math.nan, ips=0.0)

    def after_step(self, info: StepInfo) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=info.step, loss=info.loss, ips=info.images_per_s)

    def after_epoch(self, info: EpochInfo) -> None:
        parts = ", ".join(f"{name} {value:.4f}" for name, value in info.parts.items())
        saved = " (checkpoint saved)" if info.checkpoint is not None else ""
        self._bar.console.print(
            f"epoch {info.epoch}/{info.epochs}: train loss {info.loss:.4f} ({parts}){saved}"
        )
