"""Progress in a log (no terminal): a named line at least every 30 s, never silence."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from labeler.progress import Heartbeat, ProgressBar, TrainProgress
from ml_backend.training.hooks import EpochInfo, StepInfo


def _log() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_the_heartbeat_is_due_once_per_interval() -> None:
    now = [0.0]
    beat = Heartbeat(30.0, clock=lambda: now[0])
    seen = []
    for t in (0.0, 10.0, 29.9, 30.0, 45.0, 61.0):
        now[0] = t
        seen.append(beat.due())
    assert seen == [True, False, False, True, False, True]


def test_training_in_a_log_names_its_numbers() -> None:
    console, out = _log()
    with TrainProgress(console=console, every_s=0.0) as hooks:
        hooks.before_step(1, 1, 4)
        hooks.after_step(StepInfo(1, 1, 4, 0.682, {"loss_classifier": 0.5}, 0.01, 2.5))
        parts = {"loss_classifier": 1.0, "loss_box_reg": 0.4622}
        hooks.after_epoch(EpochInfo(1, 3, 1.4622, parts, Path("ckpt.pt")))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("epoch 1: step 1/4, step loss 0.682, 2.50 img/s")
    assert lines[1] == (
        "epoch 1/3: mean train loss 1.4622 (loss_classifier 1.0000, loss_box_reg 0.4622) "
        "(checkpoint saved)"
    )


def test_a_long_epoch_in_a_log_prints_at_most_one_line_per_interval() -> None:
    console, out = _log()
    with TrainProgress(console=console, every_s=3600.0) as hooks:
        for step in range(1, 101):
            hooks.before_step(1, step, 100)
            hooks.after_step(StepInfo(1, step, 100, 1.0, {}, 0.01, 1.0))
    assert len(out.getvalue().splitlines()) == 1  # the first step's line; the next is 1 h away


def test_a_job_bar_in_a_log_says_how_far_and_ends_with_a_summary() -> None:
    console, out = _log()
    with ProgressBar("pre-label", console=console, every_s=3600.0) as bar:
        bar.start(88)
        for _ in range(88):
            bar.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("pre-label: 1/88 done") and "left" in lines[0]
    assert lines[1].startswith("pre-label: 88/88 done") and "left" not in lines[1]


def test_on_a_terminal_the_bar_draws_and_no_heartbeat_lines_are_printed() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with TrainProgress(console=console, every_s=0.0) as hooks:
        hooks.before_step(1, 1, 2)
        hooks.after_step(StepInfo(1, 1, 2, 0.5, {}, 0.01, 1.0))
    assert "step 1/2, step loss" not in out.getvalue()
