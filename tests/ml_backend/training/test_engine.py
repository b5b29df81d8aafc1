"""The shared training engine on a tiny task: schedule, named loss parts, NaN stop, exact resume."""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from ml_backend.training import engine
from ml_backend.training.engine import (
    Checkpoint,
    CheckpointMismatchError,
    Engine,
    FitConfig,
    Schedule,
    warmup_cosine,
)
from ml_backend.training.hooks import EpochInfo, NonFiniteLossError, StepInfo, TrainHooks
from tests.conftest import fill_disk

_Batch = tuple[torch.Tensor, torch.Tensor]


class LineTask:
    """Fit y = 3x + 1 with dropout and noisy batches, both drawn from torch's global RNG."""

    def __init__(self, *, nan_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Dropout(0.2), nn.Linear(1, 1))
        self.steps_per_epoch, self.nan_at, self.calls = 3, nan_at, 0

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)

    def batches(self, epoch: int) -> Iterator[tuple[_Batch, int]]:
        for _ in range(self.steps_per_epoch):
            x = torch.rand(8, 1)
            yield (x, 3 * x + 1 + 0.01 * torch.randn(8, 1)), 8

    def forward(self, model: nn.Module, batch: _Batch) -> torch.Tensor:
        out: torch.Tensor = model(batch[0])
        return out

    def losses(self, out: torch.Tensor, batch: _Batch) -> dict[str, torch.Tensor]:
        self.calls += 1
        mse = (out - batch[1]).pow(2).mean()
        if self.calls == self.nan_at:
            mse = mse * math.nan
        return {"mse": mse, "l1": 0.1 * (out - batch[1]).abs().mean()}


CONFIG = FitConfig(epochs=3, schedule=Schedule(warmup=2), grad_clip=1.0, seed=7)
CPU = torch.device("cpu")


@dataclass
class Recorder(TrainHooks):
    calls: list[str] = field(default_factory=list)
    steps: list[StepInfo] = field(default_factory=list)
    epochs: list[EpochInfo] = field(default_factory=list)

    def before_step(self, epoch: int, step: int, steps: int) -> None:
        self.calls.append(f"before {epoch}.{step}/{steps}")

    def after_step(self, info: StepInfo) -> None:
        self.calls.append(f"after {info.epoch}.{info.step}")
        self.steps.append(info)

    def after_epoch(self, info: EpochInfo) -> None:
        self.calls.append(f"epoch {info.epoch}/{info.epochs}")
        self.epochs.append(info)


class Killed(Exception):
    pass


class KillAfterFirstEpoch(TrainHooks):
    def after_epoch(self, info: EpochInfo) -> None:
        assert info.checkpoint is not None and info.checkpoint.is_file()
        raise Killed  # the checkpoint of this epoch is on disk, as after a real kill


def test_warmup_then_cosine_down_to_five_percent() -> None:
    def rates(schedule: Schedule, total: int) -> list[float]:
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
        scheduler = warmup_cosine(optimizer, schedule, total)
        out = []
        for _ in range(total + 1):
            out.append(optimizer.param_groups[0]["lr"] / 2.0)
            optimizer.step()
            scheduler.step()
        return out

    f = rates(Schedule(warmup=10), 110)
    assert f[0] == pytest.approx(0.001) and f[5] == pytest.approx(0.001 + 0.999 * 0.5)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.05 + 0.95 * 0.5)
    assert f[110] == pytest.approx(0.05)
    assert rates(Schedule(warmup=0), 10)[0] == pytest.approx(1.0)
    towards_zero = rates(Schedule(warmup=3, start=0.25, final=0.0), 13)
    assert towards_zero[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert towards_zero[13] == pytest.approx(0.0, abs=1e-12)


def test_hooks_get_the_named_parts_in_order() -> None:
    hooks = Recorder()
    result = Engine(LineTask(), CONFIG, device=CPU, hooks=[hooks]).fit()
    assert hooks.calls[:3] == ["before 1.1/3", "after 1.1", "before 1.2/3"]
    assert hooks.calls[6:8] == ["epoch 1/3", "before 2.1/3"] and len(hooks.epochs) == 3
    first = hooks.steps[0]
    assert set(first.parts) == {"mse", "l1"}
    assert first.loss == pytest.approx(first.parts["mse"] + first.parts["l1"])
    assert first.lr == pytest.approx(0.1 * 0.001) and first.images_per_s > 0
    epoch_one = hooks.steps[:3]
    assert hooks.epochs[0].loss == pytest.approx(sum(s.loss for s in epoch_one) / 3)
    assert hooks.epochs[0].parts["mse"] == pytest.approx(sum(s.parts["mse"] for s in epoch_one) / 3)
    assert hooks.epochs[0].checkpoint is None
    assert result.losses == [e.loss for e in hooks.epochs] and result.losses[2] < result.losses[0]
    assert result.parts[2] == hooks.epochs[2].parts


def test_resume_after_a_kill_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    straight = LineTask()
    whole = Engine(straight, CONFIG, device=CPU).fit(Checkpoint(tmp_path / "a.pt", key={"k": 1}))

    with pytest.raises(Killed):
        Engine(LineTask(), CONFIG, device=CPU, hooks=[KillAfterFirstEpoch()]).fit(
            Checkpoint(tmp_path / "b.pt", key={"k": 1})
        )
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    assert saved["epoch"] == 1 and {"model", "optimizer", "scheduler", "config"} <= set(saved)
    resumed_task, hooks = LineTask(), Recorder()
    resumed = Engine(resumed_task, CONFIG, device=CPU, hooks=[hooks]).fit(
        Checkpoint(tmp_path / "b.pt", key={"k": 1}), resume=True
    )
    assert resumed.resumed_from == 1 and [e.epoch for e in hooks.epochs] == [2, 3]
    assert resumed.losses == whole.losses and resumed.parts == whole.parts
    a, b = straight.model.state_dict(), resumed_task.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_key_another_length_and_an_old_format(tmp_path: Path) -> None:
    one = FitConfig(epochs=1, schedule=Schedule(warmup=0), grad_clip=1.0, seed=0)
    Engine(LineTask(), one, device=CPU).fit(Checkpoint(tmp_path / "c.pt", key={"lr": 0.1}))
    with pytest.raises(CheckpointMismatchError, match="different config"):
        Engine(LineTask(), one, device=CPU).fit(
            Checkpoint(tmp_path / "c.pt", key={"lr": 0.5}), resume=True
        )
    longer = FitConfig(epochs=2, schedule=Schedule(warmup=0), grad_clip=1.0, seed=0)
    with pytest.raises(CheckpointMismatchError, match="a run of 1 epochs"):
        Engine(LineTask(), longer, device=CPU).fit(
            Checkpoint(tmp_path / "c.pt", key={"lr": 0.1}), resume=True
        )
    torch.save({"epoch": 1, "config": {"lr": 0.1}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointMismatchError, match="older version"):
        Engine(LineTask(), one, device=CPU).fit(
            Checkpoint(tmp_path / "old.pt", key={"lr": 0.1}), resume=True
        )


def test_a_non_finite_loss_stops_before_the_step_with_its_parts(tmp_path: Path) -> None:
    task = LineTask(nan_at=2)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 2 \(\{'mse': nan, 'l1': .*lower"):
        Engine(task, CONFIG, device=CPU).fit(Checkpoint(tmp_path / "run" / "x.pt", key=None))
    assert all(torch.isfinite(p).all() for p in task.model.parameters())
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_that_does_not_fit_keeps_the_last_one_and_no_temp_file(
    tmp_path: Path, small_disk: Callable[[Path, str], Path]
) -> None:
    """On a full disk the previous checkpoint survives, the temp file goes, and the error
    carries ENOSPC (the CLI turns it into one line and exit code 7)."""
    work = small_disk(tmp_path / "run", "1m")
    engine.atomic_torch_save({"epoch": 1}, work / "checkpoint.pt")
    fill_disk(work)
    with pytest.raises(Exception) as caught:
        engine.atomic_torch_save({"epoch": 2, "w": torch.zeros(100_000)}, work / "checkpoint.pt")
    causes = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in causes), causes
    assert torch.load(work / "checkpoint.pt", weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in work.iterdir()) == sorted(["checkpoint.pt", ".filler"])
