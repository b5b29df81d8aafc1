"""Self-supervised pre-training: finite losses, a torchvision-layout backbone, exact resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import BadInputError, JobFailedError
from ml_backend.encoder.checkpoint import load_encoder, read_notes
from ml_backend.encoder.config import Backbone, EncoderConfig
from ml_backend.encoder.frames import FrameSet, load_frames
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.pretrain import (
    CHECKPOINT,
    PretrainConfig,
    PretrainResult,
    pretrain,
    torchvision_trunk_state,
)
from ml_backend.training.engine import CheckpointMismatchError
from ml_backend.training.hooks import EpochInfo, NonFiniteLossError, StepInfo, TrainHooks

SIZE = 32
ENCODER = EncoderConfig(backbone="resnet18", crop_size=SIZE)


def _config(**update: object) -> PretrainConfig:
    base = PretrainConfig(encoder=ENCODER, epochs=2, batch_size=4, lr=1e-3, warmup_steps=0)
    return base.model_copy(update=update)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> FrameSet:
    """4 clips of 3 frames: each clip one random texture, its frames slightly shifted."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for clip in range(4):
        texture = rng.integers(0, 256, (48, 48), dtype=np.uint8)
        (root / f"clip{clip}").mkdir()
        for t in range(3):
            frame = np.roll(texture, 2 * t, axis=1)
            Image.fromarray(frame).save(root / f"clip{clip}" / f"{t}.png")
    return load_frames(root, size=SIZE)


@dataclass
class Recorder(TrainHooks):
    steps: list[tuple[int, int, int]] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    parts: set[str] = field(default_factory=set)

    def after_step(self, info: StepInfo) -> None:
        assert info.images_per_s > 0
        self.steps.append((info.epoch, info.step, info.steps))
        self.parts |= set(info.parts)

    def after_epoch(self, info: EpochInfo) -> None:
        self.epochs.append(info.epoch)


@pytest.fixture(scope="module")
def straight(frames: FrameSet, tmp_path_factory: pytest.TempPathFactory) -> PretrainResult:
    """Two NT-Xent epochs in one call."""
    return pretrain(frames, _config(), out_dir=tmp_path_factory.mktemp("straight"))


def test_ntxent_trains_and_writes_backbone_and_encoder(straight: PretrainResult) -> None:
    assert straight.epochs_done == 2 and straight.resumed_from == 0
    assert len(straight.losses) == 2 and all(np.isfinite(straight.losses))
    assert straight.steps_per_epoch == 1  # 4 clips, 4 per batch
    notes = read_notes(straight.out_dir)
    assert notes["data"]["clips"] == 4 and notes["losses"] == straight.losses
    assert (straight.out_dir / CHECKPOINT).is_file()


def test_saved_backbone_loads_through_encoder_config(straight: PretrainResult) -> None:
    trained = load_encoder(straight.out_dir)
    config = ENCODER.model_copy(update={"backbone_weights": str(straight.backbone_path)})
    reloaded = LesionEncoder(config).eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.trunk(x), trained.trunk(x), rtol=0, atol=0)
    torch.manual_seed(0)  # the loop's initialisation: training moved the weights away from it
    initial = LesionEncoder(ENCODER).trunk.state_dict()["0.weight"]
    assert not torch.equal(initial, trained.trunk.state_dict()["0.weight"])


class Killed(Exception):
    pass


class KillAfterFirstEpoch(Recorder):
    def after_epoch(self, info: EpochInfo) -> None:
        raise Killed  # the checkpoint is already on disk, as after a real kill


def test_resume_ends_where_an_uninterrupted_run_does(
    frames: FrameSet, straight: PretrainResult, tmp_path: Path
) -> None:
    with pytest.raises(Killed):
        pretrain(frames, _config(), out_dir=tmp_path, hooks=KillAfterFirstEpoch())
    hooks = Recorder()
    resumed = pretrain(frames, _config(), out_dir=tmp_path, resume=True, hooks=hooks)
    assert resumed.resumed_from == 1 and hooks.epochs == [2] and hooks.steps == [(2, 1, 1)]
    assert hooks.parts == {"ntxent"}
    assert resumed.losses == pytest.approx(straight.losses)
    a, b = load_encoder(straight.out_dir).state_dict(), load_encoder(tmp_path).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_resume_refuses_a_checkpoint_of_other_settings(
    frames: FrameSet, straight: PretrainResult
) -> None:
    with pytest.raises(CheckpointMismatchError, match="different config or data"):
        pretrain(frames, _config(temperature=0.1), out_dir=straight.out_dir, resume=True)


def test_triplet_trains_on_clips_by_frames(frames: FrameSet, tmp_path: Path) -> None:
    hooks = Recorder()
    config = _config(loss="triplet", epochs=1, clips_per_batch=2, frames_per_clip=2, head_dim=None)
    result = pretrain(frames, config, out_dir=tmp_path, hooks=hooks)
    assert result.steps_per_epoch == 2 and hooks.steps == [(1, 1, 2), (1, 2, 2)]
    assert hooks.parts == {"triplet"}
    assert np.isfinite(result.losses[0]) and result.losses[0] > 0


def test_non_finite_loss_stops_the_run(
    frames: FrameSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nan_loss(a: torch.Tensor, b: torch.Tensor, *, temperature: float) -> torch.Tensor:
        return (a.sum() + b.sum()) * torch.nan

    monkeypatch.setattr("ml_backend.encoder.pretrain.nt_xent_loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match="epoch 1 step 1"):
        pretrain(frames, _config(), out_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT).exists()


def test_one_clip_is_refused(frames: FrameSet, tmp_path: Path) -> None:
    single = FrameSet(frames.root, frames.size, frames.clips[:1])
    with pytest.raises(JobFailedError, match="needs 2"):
        pretrain(single, _config(), out_dir=tmp_path)


@pytest.mark.parametrize("backbone", ["resnet50", "densenet121"])
def test_trunk_keys_map_back_to_torchvision_names(backbone: Backbone) -> None:
    with torch.device("meta"):  # keys only; resnet18's weights round-trip above
        trunk = LesionEncoder(EncoderConfig(backbone=backbone, crop_size=SIZE)).trunk
    state = torchvision_trunk_state(trunk.state_dict(), backbone)
    prefix = "features." if backbone == "densenet121" else "layer4."
    assert any(k.startswith(prefix) for k in state)
    with pytest.raises(BadInputError, match="do not match"):
        torchvision_trunk_state({**trunk.state_dict(), "9.extra": torch.zeros(1)}, backbone)
