"""Training the detector on a tiny set: exact resume after a kill, NaN stop, named loss parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.birads import Birads
from ml_backend.detector import train as detector_train
from ml_backend.detector.config import DetectorConfig, load_config
from ml_backend.detector.data import Sample
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.train import CHECKPOINT, train
from ml_backend.training.engine import CheckpointMismatchError
from ml_backend.training.hooks import EpochInfo, NonFiniteLossError, TrainHooks

PARTS = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}


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


class _KillAfterFirstEpoch(TrainHooks):
    def after_epoch(self, info: EpochInfo) -> None:
        raise KeyboardInterrupt  # the checkpoint of this epoch is already on disk


def test_resume_after_a_kill_gives_the_uninterrupted_model(
    tiny: tuple[DetectorConfig, list[Sample], Path], tmp_path: Path
) -> None:
    config, samples, home = tiny
    straight = train(config, samples, home=home, work_dir=tmp_path / "straight")
    assert (straight.resumed_from, straight.epochs_done, len(straight.losses)) == (0, 2, 2)
    assert set(straight.parts[0]) == PARTS

    work = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, samples, home=home, work_dir=work, hooks=_KillAfterFirstEpoch())
    assert torch.load(work / CHECKPOINT, weights_only=True)["epoch"] == 1
    result = train(config, samples, home=home, work_dir=work, resume=True)
    assert (result.resumed_from, result.epochs_done, len(result.losses)) == (1, 2, 1)
    assert torch.load(work / CHECKPOINT, weights_only=True)["epoch"] == 2
    assert result.losses == straight.losses[1:]
    a, b = straight.detector.model.state_dict(), result.detector.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_checkpoint_of_another_config(
    tiny: tuple[DetectorConfig, list[Sample], Path], tmp_path: Path
) -> None:
    config, samples, home = tiny
    one_epoch = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 1})})
    train(one_epoch, samples, home=home, work_dir=tmp_path / "run")
    other = one_epoch.model_copy(update={"train": one_epoch.train.model_copy(update={"lr": 0.5})})
    with pytest.raises(CheckpointMismatchError, match="different config"):
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

    monkeypatch.setattr(detector_train, "FasterRCNNDetector", Exploding)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 1 .*'loss_classifier': nan.*lower"):
        train(config, samples, home=home, work_dir=tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT).exists()
