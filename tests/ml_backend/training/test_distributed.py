"""Training in several processes (issue 16): gloo on 2 CPU processes, on the smaller bundled
sample (BrEaST, 26 images: what is under test is the process count, not the data).

The loss checks use `ddp_probe` (the detector's own train() under labeler.launch, tiny with
GroupNorm, 8 images, batches of 4): the same global batch gives the same loss in 1 process and
in 2, and the checkpoint a 1-process run left after epoch 1 resumes in 2 to the same losses.
The CLI tests train with `--nproc 2` and check that one version, one run and one JSON result
come out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from labeler.launch import without_option
from ml_backend.training.distributed import BadWorldError, World
from tests.conftest import copy_sample, isolated_env

TOLERANCE = 1e-4  # the first step: the same weights, the same images, the same samples
LATER = 5e-3  # relative, later steps: 1 thread per process vs 2 rounds floats differently


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The bundled BUS-BRA sample imported into a fresh home; the environment of its commands."""
    base = tmp_path_factory.mktemp("ddp")
    (base / "root").mkdir()
    env = os.environ | isolated_env(base)
    sample = copy_sample("breast_lesions_usg_mini", base / "root")
    _run(["-m", "labeler.cli", "import", str(sample), "--dataset", "breast-lesions-usg"], env)
    yield env


def _run(
    args: list[str], env: dict[str, str], *, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600
    )
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _probe(env: dict[str, str], work: Path, *args: str) -> dict[str, Any]:
    done = _run(["-m", "tests.ml_backend.training.ddp_probe", "--work", str(work), *args], env)
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # rank 0 alone prints
    out: dict[str, Any] = json.loads(lines[0])
    return out


@dataclass(frozen=True)
class OneProcess:
    out: dict[str, Any]
    epoch_1: Path  # the checkpoint it wrote after epoch 1


@pytest.fixture(scope="module")
def one_process(home: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> OneProcess:
    work = tmp_path_factory.mktemp("one")
    return OneProcess(_probe(home, work, "--epochs", "2", "--keep-after", "1"), work / "epoch-1.pt")


@pytest.fixture(scope="module")
def two_processes(
    home: dict[str, str], one_process: OneProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One 2-process launch: a fresh 2-epoch run, then the 1-process run's epoch-1 checkpoint
    resumed (as a kill after epoch 1 would have left it)."""
    work = tmp_path_factory.mktemp("two")
    resume = ["--then-resume", str(one_process.epoch_1), str(work / "resumed")]
    return _probe(home, work / "fresh", "--epochs", "2", "--nproc", "2", *resume)


def test_two_processes_take_the_same_steps_as_one(
    one_process: OneProcess, two_processes: dict[str, Any]
) -> None:
    one, two = one_process.out, two_processes
    assert len(two["steps"]) == len(one["steps"]) == 4  # 8 images, global batch 4
    assert two["steps"][0] == pytest.approx(one["steps"][0], abs=TOLERANCE)
    assert two["steps"] == pytest.approx(one["steps"], rel=LATER)


def test_a_run_interrupted_in_one_process_resumes_in_two(
    one_process: OneProcess, two_processes: dict[str, Any]
) -> None:
    one, rest = one_process.out, two_processes["then"]
    assert rest["resumed_from"] == 1
    assert rest["steps"] == pytest.approx(one["steps"][2:], rel=LATER)
    assert rest["epochs"] == pytest.approx(one["epochs"][1:], rel=LATER)


def test_labeler_train_nproc_2_registers_exactly_one_version(home: dict[str, str]) -> None:
    cli = ["-m", "labeler.cli"]
    done = _run(
        [*cli, "train", "--config", "tiny", "--epochs", "1", "--nproc", "2", "--json"], home
    )
    out = json.loads(done.stdout)  # one JSON document: the other rank printed nothing
    assert out["kind"] == "detector" and out["epochs"] == 1 and out["promoted"] is True
    assert "epoch 1/1: mean train loss" in done.stderr
    listed = json.loads(_run([*cli, "models", "list", "--json"], home).stdout)["versions"]
    assert [v["id"] for v in listed if v["kind"] == "detector"] == [out["version_id"]]
    url = f"sqlite:///{Path(home['LABELER_HOME']) / 'labeler.db'}"
    with create_engine(url).connect() as conn:
        runs = conn.execute(text("select status, model_version_id from training_runs")).all()
    assert [tuple(r) for r in runs] == [("succeeded", out["version_id"])]
    assert not list((Path(home["LABELER_HOME"]) / "runs").glob("run-*/checkpoint.pt"))


def test_labeler_encoder_train_nproc_2_registers_exactly_one_version(home: dict[str, str]) -> None:
    args = ["-m", "labeler.cli", "encoder", "train", "--epochs", "1", "--crop-size", "64"]
    args += ["--lesions-per-batch", "4", "--views-per-lesion", "2", "--nproc", "2", "--json"]
    out = json.loads(_run(args, home).stdout)
    assert out["kind"] == "encoder" and out["promoted"] is True and len(out["losses"]) == 1
    listed = json.loads(_run(["-m", "labeler.cli", "models", "list", "--json"], home).stdout)
    assert [v["id"] for v in listed["versions"] if v["kind"] == "encoder"] == [out["version_id"]]


def test_a_process_count_that_cannot_split_the_batch_is_one_line(home: dict[str, str]) -> None:
    args = ["-m", "labeler.cli", "train", "--config", "tiny", "--nproc", "3"]
    done = _run(args, home, ok=False)
    assert done.returncode == 2
    assert "3 processes cannot split a batch of 4 evenly" in done.stderr
    assert "Traceback" not in done.stderr


def test_world_share_and_argv() -> None:
    assert World(0, 2).share(4) == 2 and World().share(3) == 3
    assert World().from_main(lambda: 7) == 7  # one process: make() itself
    with pytest.raises(BadWorldError):
        World(1, 4).share(6)
    argv = ["train", "--nproc", "2", "--epochs", "1", "--nproc=3", "--json"]
    assert without_option(argv, "--nproc") == ["train", "--epochs", "1", "--json"]
