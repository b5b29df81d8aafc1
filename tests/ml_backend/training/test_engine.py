"""The training engine on a tiny synthetic set: resume after a kill, NaN stop, repeatability."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.birads import Birads
from ml_backend.detector.config import DetectorConfig, load_config
from ml_backend.detector.data import Sample
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.training import engine
from ml_backend.training.engine import CHECKPOINT, train
from ml_backend.training.hooks import NonFiniteLossError
from tests.conftest import fill_disk


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[DetectorConfig, list[Sample], Path]:
    home = tmp_path / "home"
    (home / "images").mkdir(parents=True)
    samples = []
    for i in range(4):
        img = np.full((96, 128), 30, dtype=np.uint8)
        img[20 + i : 60 + i, 30:80] = 220
        Image.fromarray(img).save(home / "images" / f"{i}.png")
        cat = Birads.B2 if i % 2 else Birads.B5
        samples.append(Sample(f"images/{i}.png", ((30.0, 20.0 + i, 80.0, 60.0 + i),), (cat,)))
    base = load_config("small")
    config = base.model_copy(
        update={
            "image_size": 128,
            "train": base.train.model_copy(
                update={"epochs": 2, "batch_size": 2, "warmup_iters": 2}
            ),
        }
    )
    return config, samples, home


class _KillAfterFirstEpoch:
    def on_step(self, epoch: int, step: int, steps: int, loss: float, images_per_s: float) -> None:
        pass

    def on_epoch_end(self, epoch: int, mean_loss: float) -> None:
        raise KeyboardInterrupt  # the checkpoint of this epoch is already on disk


def test_resume_continues_the_epoch_count(
    tiny: tuple[DetectorConfig, list[Sample], Path], tmp_path: Path
) -> None:
    config, samples, home = tiny
    work = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, samples, home=home, work_dir=work, hooks=_KillAfterFirstEpoch())
    saved = torch.load(work / CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 1
    assert {"model", "optimizer", "scheduler", "config"} <= set(saved)

    result = train(config, samples, home=home, work_dir=work, resume=True)
    assert (result.resumed_from, result.epochs_done, len(result.losses)) == (1, 2, 1)
    assert torch.load(work / CHECKPOINT, weights_only=True)["epoch"] == 2


def test_resume_refuses_a_checkpoint_of_another_config(
    tiny: tuple[DetectorConfig, list[Sample], Path], tmp_path: Path
) -> None:
    config, samples, home = tiny
    one_epoch = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 1})})
    train(one_epoch, samples, home=home, work_dir=tmp_path / "run")
    other = one_epoch.model_copy(update={"train": one_epoch.train.model_copy(update={"lr": 0.5})})
    with pytest.raises(ValueError, match="different config"):
        train(other, samples, home=home, work_dir=tmp_path / "run", resume=True)


def test_a_non_finite_loss_stops_with_a_clear_error(
    tiny: tuple[DetectorConfig, list[Sample], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, samples, home = tiny

    class Exploding(FasterRCNNDetector):
        def __init__(self, config: DetectorConfig, device: str = "cpu") -> None:
            super().__init__(config, device=device)
            inner = self.model.forward

            def forward(images: object, targets: object = None) -> object:
                losses = inner(images, targets)
                losses["loss_classifier"] = losses["loss_classifier"] * float("nan")
                return losses

            self.model.forward = forward

    monkeypatch.setattr(engine, "FasterRCNNDetector", Exploding)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 1 .*lower the learning rate"):
        train(config, samples, home=home, work_dir=tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_the_same_seed_gives_the_same_model(
    tiny: tuple[DetectorConfig, list[Sample], Path], tmp_path: Path
) -> None:
    config, samples, home = tiny
    one = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 1})})
    a = train(one, samples, home=home, work_dir=tmp_path / "a").detector.model.state_dict()
    b = train(one, samples, home=home, work_dir=tmp_path / "b").detector.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_that_does_not_fit_keeps_the_last_one_and_no_temp_file(
    tmp_path: Path, small_disk: Callable[[Path, str], Path]
) -> None:
    """On a full disk the previous checkpoint survives, the temp file goes, and the error
    carries ENOSPC (the CLI turns it into one line and exit code 7)."""
    work = small_disk(tmp_path / "run", "1m")
    engine.atomic_torch_save({"epoch": 1}, work / CHECKPOINT)
    fill_disk(work)
    with pytest.raises(Exception) as caught:
        engine.atomic_torch_save({"epoch": 2, "w": torch.zeros(100_000)}, work / CHECKPOINT)
    causes = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in causes), causes
    assert torch.load(work / CHECKPOINT, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in work.iterdir()) == sorted([CHECKPOINT, ".filler"])
