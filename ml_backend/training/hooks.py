"""What the training engine tells the outside: hooks with named loss parts, and the NaN stop.

As in detectron2's HookBase, a hook overrides only the calls it needs. The engine hands over the
loss by its named parts (the detector's loss_classifier, loss_box_reg, loss_objectness,
loss_rpn_box_reg; the encoder's ce, lr, birads; pre-training's ntxent or triplet), so a progress
bar or a log shows which term moved, not only the sum. No torch here: the CLI's progress bar
imports this module without paying for torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import JobFailedError


class NonFiniteLossError(JobFailedError):
    """The loss became NaN or infinite; the message says where and what to change."""


@dataclass(frozen=True)
class StepInfo:
    """One optimisation step, after it ran."""

    epoch: int  # from 1
    step: int  # from 1, within the epoch
    steps: int  # steps per epoch
    loss: float  # the train loss: the sum of the parts
    parts: Mapping[str, float]
    lr: float  # the first parameter group's rate this step used
    images_per_s: float  # since the epoch started


@dataclass(frozen=True)
class EpochInfo:
    """One finished epoch: means over its steps."""

    epoch: int  # from 1
    epochs: int
    loss: float  # mean train loss
    parts: Mapping[str, float]
    checkpoint: Path | None  # written before the hooks run, so a kill here loses nothing


class TrainHooks:
    """The engine's calls, doing nothing; the CLI draws a progress bar, tests record calls."""

    def before_step(self, epoch: int, step: int, steps: int) -> None:
        pass

    def after_step(self, info: StepInfo) -> None:
        pass

    def after_epoch(self, info: EpochInfo) -> None:
        pass
