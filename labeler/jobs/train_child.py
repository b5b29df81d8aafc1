"""Training in a spawned child process: what the retrain job and the simulation train with.

Why a child: a kill leaves a checkpoint the next run resumes from, and the trainer's memory goes
back to the system when it ends. The child is spawned (a fresh interpreter, no forked threads or
CUDA state), sets its torch threads explicitly, and sends back a typed `TrainingResult`, or a
`TrainingFailure` (one line and its exit code), through a pipe. Given the caller's `HeldLock`, it
inherits that descriptor and so holds the lock as long as it lives; it dies with the parent
(PR_SET_PDEATHSIG), even after `kill -9`. Progress comes back through the same pipe; the parent
says something at least every `PROGRESS_EVERY_S`.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from core.errors import ExitCode, JobFailedError
from core.settings import Settings
from labeler.exiting import finish
from labeler.lock import HeldLock, exit_with_parent
from ml_backend.training.hooks import EpochInfo, StepInfo, TrainHooks

if TYPE_CHECKING:  # the child imports torch only after it has bound itself to the parent
    from labeler.jobs.train import TrainingResult

PROGRESS_EVERY_S = 30.0  # the parent says something at least this often
_CHILD_PROGRESS_S = 10.0  # the child's step updates, at most this often


class TrainingFailedError(JobFailedError):
    """The training child failed; its exit code is kept (7 disk full, 6 damaged, 4 busy)."""


@dataclass(frozen=True)
class TrainRequest:
    """What to train: fine-tune `parent` (its config), or a fresh `preset` when it is None."""

    settings: Settings
    parent: str | None
    exclude_4: bool
    epochs: int
    include_reference: bool
    resume: bool
    threads: int
    preset: str = "small"


@dataclass(frozen=True)
class TrainingFailure:
    message: str
    exit_code: ExitCode


@dataclass(frozen=True)
class Progress:
    line: str


@dataclass(frozen=True)
class _InheritedFd:
    """A descriptor the spawned child gets under the same number (the same open file, so the
    same flock); multiprocessing adds it to the child's kept descriptors while pickling."""

    fd: int

    def __reduce__(self) -> tuple[Callable[[Any], _InheritedFd], tuple[Any]]:
        return _rebuild_fd, (reduction.DupFd(self.fd),)


def _rebuild_fd(dup: Any) -> _InheritedFd:
    return _InheritedFd(int(dup.detach()))


def train_in_child(
    request: TrainRequest, *, lock: HeldLock | None, say: Callable[[str], None]
) -> TrainingResult:
    """Run `request` in a spawned child and return its result; TrainingFailedError otherwise."""
    from labeler.jobs.train import TrainingResult

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    inherited = _InheritedFd(lock.fd) if lock else None
    child = context.Process(
        target=_child_main,
        args=(request, send, inherited, os.getpid()),
        name="labeler-train",
    )
    child.start()
    send.close()  # the child's end: EOF here once the child is gone
    try:
        answer = _listen(receive, say)
        child.join()
    except BaseException:
        child.kill()
        child.join()
        raise
    finally:
        receive.close()
    what = f"training {request.parent or request.preset}"
    if isinstance(answer, TrainingResult):
        return answer
    if isinstance(answer, TrainingFailure):
        raise TrainingFailedError(f"{what} failed: {answer.message}", exit_code=answer.exit_code)
    raise TrainingFailedError(f"{what} failed: the trainer died (exit code {child.exitcode})")


def _listen(
    receive: Connection, say: Callable[[str], None]
) -> TrainingResult | TrainingFailure | None:
    """Relay progress until the child closes its end; the child's last word is its answer."""
    from labeler.jobs.train import TrainingResult

    answer: TrainingResult | TrainingFailure | None = None
    started = last = time.monotonic()
    while True:
        if not receive.poll(max(0.0, last + PROGRESS_EVERY_S - time.monotonic())):
            say(f"training: still running ({time.monotonic() - started:.0f} s)")
            last = time.monotonic()
            continue
        try:
            message = receive.recv()
        except EOFError:
            return answer
        if isinstance(message, Progress):
            say(message.line)
            last = time.monotonic()
        elif isinstance(message, TrainingResult | TrainingFailure):
            answer = message


class _PipeHooks(TrainHooks):
    """Engine hooks that send a progress line up the pipe (steps throttled, every epoch end)."""

    def __init__(self, send: Connection) -> None:
        self._send = send
        self._last = 0.0

    def after_step(self, info: StepInfo) -> None:
        if time.monotonic() - self._last >= _CHILD_PROGRESS_S:
            self._say(
                f"epoch {info.epoch}: step {info.step}/{info.steps}, loss {info.loss:.3f}, "
                f"{info.images_per_s:.2f} img/s"
            )

    def after_epoch(self, info: EpochInfo) -> None:
        self._say(f"epoch {info.epoch}/{info.epochs}: mean loss {info.loss:.4f}")

    def _say(self, line: str) -> None:
        self._send.send(Progress(line))
        self._last = time.monotonic()


def _child_main(
    request: TrainRequest, send: Connection, lock: _InheritedFd | None, parent: int
) -> None:
    """The child's whole life; `lock` is only held (its descriptor stays open until exit)."""
    exit_with_parent(parent)
    import torch

    from ml_backend.runtime import flush_denormals

    torch.set_num_threads(request.threads)
    flush_denormals()
    try:
        send.send(_train(request, _PipeHooks(send)))
    except BaseException as exc:
        failure = _failure(exc)
        if failure is None:
            traceback.print_exc()  # a bug: its traceback is what a maintainer needs
            failure = TrainingFailure(f"{type(exc).__name__}: {exc}", ExitCode.PARTIAL)
        send.send(failure)
        send.close()
        finish(int(failure.exit_code) or 1)
    send.close()
    finish(0)  # without the interpreter's teardown: 2 CPU-s after training


def _train(request: TrainRequest, hooks: _PipeHooks) -> TrainingResult:
    from labeler.context import AppContext
    from labeler.jobs.train import config_of_version, make_config, train_detector

    app = AppContext(request.settings)
    try:
        if request.parent is None:
            config = make_config(request.preset, exclude_4=request.exclude_4, epochs=request.epochs)
        else:
            config = config_of_version(app, request.parent, epochs=request.epochs)
        return train_detector(
            app,
            config=config,
            exclude_4=request.exclude_4,
            resume=request.resume,
            hooks=hooks,
            init_from=request.parent,
            include_reference=request.include_reference,
        )
    finally:
        app.engine.dispose()


def _failure(exc: BaseException) -> TrainingFailure | None:
    """The one line and exit code of an expected failure, as the CLI would say them."""
    from labeler.cli.common import expected_failure

    if isinstance(exc, KeyboardInterrupt):
        return TrainingFailure("interrupted", ExitCode.PARTIAL)
    found = expected_failure(exc)
    return None if found is None else TrainingFailure(found[0], found[1])
