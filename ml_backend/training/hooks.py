"""What every training loop here shares: progress hooks and the non-finite-loss stop.

The detector engine, the encoder trainer and the encoder pre-training all call the same two
hooks (labeler.progress.TrainProgress draws them) and stop with the same error on NaN/inf.
"""

from __future__ import annotations

from typing import Protocol


class NonFiniteLossError(RuntimeError):
    pass


class TrainHooks(Protocol):
    """Called by a training loop; the CLI draws a progress bar, tests record calls."""

    def on_step(
        self, epoch: int, step: int, steps: int, loss: float, images_per_s: float
    ) -> None: ...
    def on_epoch_end(self, epoch: int, mean_loss: float) -> None: ...


class NoHooks:
    def on_step(self, epoch: int, step: int, steps: int, loss: float, images_per_s: float) -> None:
        pass

    def on_epoch_end(self, epoch: int, mean_loss: float) -> None:
        pass
