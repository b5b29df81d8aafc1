"""Progress on stderr, so --json output on stdout stays clean.

On a terminal: a rich bar. Elsewhere (a log file, cron, a CI log) rich draws nothing until the
end, so a long job looked dead for minutes: there the same object prints one plain line at most
every `every_s` seconds (30 by default) and at each epoch's end, each number named.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
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

EVERY_S = 30.0


class Heartbeat:
    """True at most once per `every_s` seconds (and on the first call): when to print a line."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every_s, self._clock = every_s, clock
        self._last: float | None = None

    def due(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True


def _eta(done: int, total: int, elapsed: float) -> str:
    if done <= 0 or done >= total:
        return ""
    left = elapsed / done * (total - done)
    return f", about {left / 60:.1f} min left" if left >= 90 else f", about {left:.0f} s left"


class _LiveBar:
    """A rich bar on a terminal, plain heartbeat lines elsewhere, while the `with` block runs."""

    _bar: Progress

    def __init__(self, console: Console | None, every_s: float) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.heartbeat = Heartbeat(every_s)
        self.started = time.monotonic()

    def say(self, line: str) -> None:
        self.console.print(line, highlight=False, soft_wrap=True)

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        if self.live:
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live:
            self._bar.stop()


class ProgressBar(_LiveBar):
    def __init__(
        self, description: str, *, console: Console | None = None, every_s: float = EVERY_S
    ) -> None:
        super().__init__(console, every_s)
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._description = description
        self._task: TaskID | None = None
        self._total, self._done = 0, 0

    def start(self, total: int) -> None:
        self._total, self._done = total, 0
        self._task = self._bar.add_task(self._description, total=total)

    def advance(self, n: int = 1) -> None:
        self._done += n
        if self._task is not None:
            self._bar.advance(self._task, n)
        if not self.live and (self.heartbeat.due() or self._done >= self._total):
            elapsed = time.monotonic() - self.started
            eta = _eta(self._done, self._total, elapsed)
            self.say(f"{self._description}: {self._done}/{self._total} done, {elapsed:.0f} s{eta}")


class TrainProgress(_LiveBar, TrainHooks):
    """Engine hooks: a bar per epoch with the last step's loss and images/s (or a heartbeat line
    in a log), and one line per epoch with the epoch's mean train loss and each named part."""

    def __init__(self, *, console: Console | None = None, every_s: float = EVERY_S) -> None:
        super().__init__(console, every_s)
        self._bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("step loss {task.fields[loss]:.3f}  {task.fields[ips]:.2f} img/s"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._task: TaskID | None = None
        self._epoch_started = time.monotonic()

    def before_step(self, epoch: int, step: int, steps: int) -> None:
        if self._task is None or step == 1:
            self._epoch_started = time.monotonic()
            self._task = self._bar.add_task("", total=steps, epoch=epoch, loss=math.nan, ips=0.0)

    def after_step(self, info: StepInfo) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=info.step, loss=info.loss, ips=info.images_per_s)
        if not self.live and self.heartbeat.due():
            elapsed = time.monotonic() - self._epoch_started
            eta = _eta(info.step, info.steps, elapsed)
            self.say(
                f"epoch {info.epoch}: step {info.step}/{info.steps}, step loss {info.loss:.3f}, "
                f"{info.images_per_s:.2f} img/s{eta} in this epoch"
            )

    def after_epoch(self, info: EpochInfo) -> None:
        parts = ", ".join(f"{name} {value:.4f}" for name, value in info.parts.items())
        saved = " (checkpoint saved)" if info.checkpoint is not None else ""
        self.say(
            f"epoch {info.epoch}/{info.epochs}: mean train loss {info.loss:.4f} ({parts}){saved}"
        )


def train_hooks(main: bool) -> AbstractContextManager[TrainHooks]:
    """A progress display on rank 0; the other ranks of a --nproc run stay quiet."""
    return TrainProgress() if main else nullcontext(TrainHooks())
