"""Train the detector on an imported home's first images and print what the test compares.

Run as one process, or as the ranks of labeler.launch.run_ranks(module=this): rank 0 prints one
JSON line {"steps": [...], "epochs": [...], "resumed_from": k}. `--keep-after E` copies epoch E's
checkpoint to epoch-E.pt beside it (a run killed there would leave exactly that file), and
`--resume` continues from the folder's checkpoint; `--then-resume CHECKPOINT WORK` resumes another
run's checkpoint in the same processes afterwards (its figures under "then").
The detector is `tiny` with GroupNorm: BatchNorm's statistics are per process on CPU (gloo has
no SyncBatchNorm), so only a batch-independent norm can show the same loss in any process count.
It runs at 96 px: the losses compare the same either way, at about a third of the compute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from labeler.launch import run_ranks, without_option
from ml_backend.training.distributed import joined, world_from_env
from ml_backend.training.hooks import EpochInfo, StepInfo, TrainHooks


class Record(TrainHooks):
    def __init__(self, keep_after: int | None) -> None:
        self.steps: list[float] = []
        self.epochs: list[float] = []
        self.keep_after = keep_after

    def after_step(self, info: StepInfo) -> None:
        self.steps.append(info.loss)

    def after_epoch(self, info: EpochInfo) -> None:
        self.epochs.append(info.loss)
        if info.epoch == self.keep_after and info.checkpoint is not None:
            shutil.copyfile(info.checkpoint, info.checkpoint.with_name(f"epoch-{info.epoch}.pt"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument(
        "--then-resume",
        type=Path,
        nargs=2,
        metavar=("CHECKPOINT", "WORK"),
        default=None,
        help="after the run, in the same processes: resume CHECKPOINT (copied into WORK)",
    )
    args = parser.parse_args()
    if args.nproc > 1 and not world_from_env().distributed:
        argv = without_option(sys.argv[1:], "--nproc")
        raise SystemExit(run_ranks(argv, args.nproc, module=__spec__.name))
    train_and_print(args)


def train_and_print(args: argparse.Namespace) -> None:
    from core.settings import Settings  # the launcher above imports none of this, nor torch
    from labeler.context import AppContext
    from labeler.jobs.samples import training_samples, training_set
    from labeler.jobs.train import make_config
    from ml_backend.detector.train import train

    app = AppContext(Settings())
    config = make_config("tiny", exclude_4=False, epochs=args.epochs)
    config = config.model_copy(update={"norm": "groupnorm", "image_size": 96})
    with app.sessions() as session:
        samples, _ = training_samples(
            training_set(session, include_reference=True), config, exclude_4=False
        )

    def run(work: Path, resume: bool, keep_after: int | None) -> dict[str, Any]:
        record = Record(keep_after)
        result = train(
            config,
            samples[: args.images],
            home=app.settings.home,
            work_dir=work,
            resume=resume,
            hooks=record,
            world=world,
        )
        return {"steps": record.steps, "epochs": record.epochs, "resumed_from": result.resumed_from}

    with joined("cpu") as world:
        out = run(args.work, args.resume, args.keep_after)
        if args.then_resume is not None:  # one launch for two runs: process starts are the cost
            checkpoint, work = args.then_resume
            if world.is_main:
                work.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(checkpoint, work / "checkpoint.pt")  # as a kill there leaves it
            world.barrier()
            out["then"] = run(work, True, None)
        if world.is_main:
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
