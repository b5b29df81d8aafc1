"""A rich progress bar on stderr, so --json output on stdout stays clean."""

from __future__ import annotations

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


class TrainProgress(_LiveBar):
    """Engine hooks drawn as one bar per epoch with the loss and images/s."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  {task.fields[ips]:.2f} img/s"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task: TaskID | None = None

    def on_step(self, epoch: int, step: int, steps: int, loss: float, images_per_s: float) -> None:
        if self._task is None or step == 1:
            self._task = self._bar.add_task("", total=steps, epoch=epoch, loss=loss, ips=0.0)
        self._bar.update(self._task, completed=step, epoch=epoch, loss=loss, ips=images_per_s)

    def on_epoch_end(self, epoch: int, mean_loss: float) -> None:
        self._bar.console.print(f"epoch {epoch}: mean loss {mean_loss:.4f} (checkpoint saved)")
