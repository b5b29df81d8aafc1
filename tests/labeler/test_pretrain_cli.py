"""`labeler encoder pretrain`: a folder under the data root, or the site's own images, trains;
anything else is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner, Result

from core.settings import Settings
from labeler.cli import app
from ml_backend.detector.config import load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.model import LesionEncoder

runner = CliRunner()


def _clips(folder: Path, n_clips: int) -> Path:
    rng = np.random.default_rng(1)
    for clip in range(n_clips):
        (folder / f"clip{clip}").mkdir(parents=True)
        for t in range(2):
            pixels = rng.integers(0, 256, (36, 44), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"clip{clip}" / f"{t}.png")
    return folder


def _pretrain(folder: Path, *extra: str) -> Result:
    args = ["encoder", "pretrain", str(folder), "--loss", "ntxent", "--epochs", "1"]
    return runner.invoke(app, [*args, "--crop-size", "32", *extra])


def test_pretrain_writes_loadable_backbone_weights(settings: Settings, data_root: Path) -> None:
    folder = _clips(data_root / "unlabeled", 3)
    (folder / "clip0" / "broken.png").write_bytes(b"garbage")
    result = _pretrain(folder, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # the progress bar and warnings go to stderr
    assert out["folder"] == "unlabeled" and out["loss"] == "ntxent" and out["epochs"] == 1
    assert out["data"]["clips"] == 3 and out["data"]["frames"] == 6
    assert out["data"]["skipped"] == 1 and out["skipped"][0]["path"] == "clip0/broken.png"
    assert all(np.isfinite(out["losses"]))
    weights = Path(out["backbone_weights"])
    assert weights.parent == settings.home / "pretrain" / "unlabeled-ntxent-resnet18"
    config = EncoderConfig(crop_size=32, backbone_weights=str(weights))
    trunk = LesionEncoder(config).trunk.state_dict()
    saved = torch.load(weights, weights_only=True)
    assert torch.equal(trunk["0.weight"], saved["conv1.weight"])


def test_a_folder_outside_the_data_root_is_refused(settings: Settings, tmp_path: Path) -> None:
    folder = _clips(tmp_path / "elsewhere", 2)
    result = _pretrain(folder)
    assert result.exit_code == 2 and "outside LABELER_DATA_ROOT" in result.output
    assert not (settings.home / "pretrain").exists()


def test_too_few_clips_and_bad_paths_are_clear_errors(settings: Settings, data_root: Path) -> None:
    folder = _clips(data_root / "one", 1)
    result = _pretrain(folder)
    assert result.exit_code == 2 and "needs at least 2" in result.output
    result = _pretrain(data_root / "missing")
    assert result.exit_code == 2 and "missing is not a folder" in result.output


def test_an_unknown_loss_is_a_usage_error(settings: Settings, data_root: Path) -> None:
    result = runner.invoke(app, ["encoder", "pretrain", str(data_root), "--loss", "simclr"])
    assert result.exit_code == 2 and "ntxent" in result.output


def test_the_sites_images_pretrain_the_trunk_the_detector_and_encoder_share(
    settings: Settings, busbra_dir: Path
) -> None:
    imported = runner.invoke(app, ["import", str(busbra_dir), "--dataset", "busbra", "--json"])
    assert imported.exit_code == 0, imported.output
    splits = json.loads(imported.stdout)["splits"]
    result = runner.invoke(
        app, ["encoder", "pretrain", "--epochs", "1", "--crop-size", "32", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["folder"] == "site" and out["loss"] == "ntxent"
    assert out["data"]["clips"] == 62 - splits["test"]  # the test split's pixels stay unseen
    assert out["data"]["by_kind"]["image"] == out["data"]["clips"] and out["data"]["skipped"] == 0
    weights = Path(out["backbone_weights"])
    assert weights.parent == settings.home / "pretrain" / "site-ntxent-resnet18"
    saved = torch.load(weights, weights_only=True)
    config = load_config("tiny").model_copy(update={"backbone_weights": str(weights)})
    body = FasterRCNNDetector(config).model.backbone.body.state_dict()
    assert torch.equal(body["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])


def test_the_site_pretrains_with_ntxent_only(settings: Settings) -> None:
    result = runner.invoke(app, ["encoder", "pretrain", "--loss", "triplet"])
    assert result.exit_code == 2 and "needs clips" in result.output
