"""`labeler predict` at scale: decoding in worker processes gives the same pre-labels, shards
split one pool between machines without overlap, and finished batches survive a failed run."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from bench.support.factories import import_sample, register_detector, register_random_detector
from core.settings import Settings
from db.models import Image, Prediction
from labeler.cli import app
from labeler.context import AppContext
from labeler.jobs import inference, predict
from labeler.jobs.samples import load_rgb
from ml_backend.detector.config import load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.interface import RGBImage
from ml_backend.prelabel.pipeline import Prelabel, open_pipeline
from tests.conftest import BUNDLED

runner = CliRunner()
POOL = 10  # images: 5 batches of 2, so two workers both decode and a failure can come midway


@pytest.fixture
def pool(
    settings: Settings,
    sessions: sessionmaker[Session],
    data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[int]:
    """Ten bundled BUS-BRA images imported as a plain folder; their image ids."""
    folder = data_root / "few"
    folder.mkdir()
    for png in sorted((BUNDLED / "busbra_mini" / "Images").glob("*.png"))[:POOL]:
        shutil.copy(png, folder / png.name)
    import_sample(settings, sessions, folder, "folder")
    monkeypatch.setenv("LABELER_PREDICT_BATCH_SIZE", "2")
    with sessions() as session:
        ids = list(session.scalars(select(Image.id).order_by(Image.id)))
    assert len(ids) == POOL
    return ids


def _predict(*args: str) -> dict[str, Any]:
    out = runner.invoke(app, ["predict", "--json", *args])
    assert out.exit_code == 0, out.output
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _stored(sessions: sessionmaker[Session], version: str) -> list[int]:
    """Image ids with a stored prediction of `version`, one entry per row."""
    with sessions() as session:
        stmt = select(Prediction.image_id).where(Prediction.model_version_id == version)
        return sorted(session.scalars(stmt))


def test_two_shards_pre_label_every_image_exactly_once(
    pool: list[int], settings: Settings, sessions: sessionmaker[Session]
) -> None:
    version = register_random_detector(settings, sessions)
    first = _predict("--shard", "1/2", "--workers", "0")
    mine = {im["image_id"] for im in first["images"]}
    assert first["shard"] == "1/2" and mine == {i for i in pool if i % 2 == 0}
    assert _stored(sessions, version) == sorted(mine)  # nothing of shard 2/2 was touched
    second = _predict("--shard", "2/2", "--workers", "0")
    theirs = {im["image_id"] for im in second["images"]}
    assert theirs and mine.isdisjoint(theirs) and mine | theirs == set(pool)
    assert second["already_predicted"] == len(mine)
    assert _stored(sessions, version) == pool  # each image once
    assert _predict()["predicted"] == 0


def test_decoding_workers_give_the_same_pre_labels_as_in_process(
    pool: list[int],
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    detector = FasterRCNNDetector(load_config("tiny"))
    in_process = register_detector(settings, sessions, detector)
    with_workers = register_detector(settings, sessions, detector)  # the same weights
    built: list[int] = []

    class Recorded(DataLoader[RGBImage]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(kwargs["num_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(inference, "DataLoader", Recorded)
    plain = _predict("--model", in_process, "--workers", "0")
    parallel = _predict("--model", with_workers, "--workers", "2")
    assert built == [0, 2]  # the second run really decoded in two worker processes
    assert len(plain["images"]) == POOL
    assert parallel["images"] == plain["images"]


def test_worker_decoding_reads_the_pixels_the_models_always_read(pool: list[int]) -> None:
    """decode_png stands in for samples.load_rgb in the workers; they must not drift apart."""
    home = Settings(_env_file=None).home
    paths = [str(p.relative_to(home)) for p in sorted((home / "images").rglob("*.png"))]
    assert len(paths) == POOL
    batches = list(inference.decoded_batches(home, paths, batch_size=3, workers=2))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    decoded = [image for batch in batches for image in batch]
    for path, image in zip(paths, decoded, strict=True):
        expected = load_rgb(home, path)
        assert image.dtype == expected.dtype and (image == expected).all(), path


class _FailsAfter:
    """A pipeline that dies on its third batch, as a killed or crashed run would."""

    def __init__(self, pipeline: Any, batches: int) -> None:
        self.pipeline, self.left = pipeline, batches

    def predict(self, images: Sequence[RGBImage]) -> list[Prelabel]:
        if self.left == 0:
            raise RuntimeError("stopped mid-run")
        self.left -= 1
        result: list[Prelabel] = self.pipeline.predict(images)
        return result


def test_batches_finished_before_a_failure_are_kept_and_the_rerun_does_the_rest(
    pool: list[int],
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = register_random_detector(settings, sessions)
    monkeypatch.setattr(
        predict, "open_pipeline", lambda *a, **k: _FailsAfter(open_pipeline(*a, **k), batches=2)
    )
    app_ctx = AppContext(Settings(_env_file=None))
    with pytest.raises(RuntimeError, match="stopped mid-run"):
        predict.predict_pool(app_ctx, version_id=None, workers=1)
    assert _stored(sessions, version) == pool[:4]  # two batches of two, committed
    monkeypatch.setattr(predict, "open_pipeline", open_pipeline)
    rerun = predict.predict_pool(app_ctx, version_id=None, workers=1)
    assert (rerun.predicted, rerun.already_predicted) == (POOL - 4, 4)
    assert _stored(sessions, version) == pool


@pytest.mark.parametrize(
    "value", ["0/2", "3/2", "1/0", "0/0", "2", "a/b", "-1/2", "1/2/3", "1/-2", "", " / "]
)
def test_a_bad_shard_exits_2_with_one_line(settings: Settings, value: str) -> None:
    out = runner.invoke(app, ["predict", "--shard", value])
    assert out.exit_code == 2, out.output
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: --shard must be K/N")
    assert out.stdout == ""
    assert not (settings.home / "labeler.db").exists()  # refused before anything was opened


def test_a_bad_shard_under_json_is_a_json_error(settings: Settings) -> None:
    out = runner.invoke(app, ["predict", "--shard", "5/4", "--json"])
    assert out.exit_code == 2
    assert json.loads(out.stdout) == {
        "error": "--shard must be K/N with 1 <= K <= N, e.g. 1/2 (got '5/4')",
        "exit_code": 2,
    }


def test_negative_workers_are_refused(settings: Settings) -> None:
    out = runner.invoke(app, ["predict", "--workers", "-1"])
    assert out.exit_code == 2 and "--workers" in out.output


@pytest.mark.parametrize(
    ("requested", "images", "expected"), [(2, 10, 2), (2, 2, 0), (2, 3, 1), (0, 10, 0), (1, 0, 0)]
)
def test_workers_start_only_for_batches_they_can_overlap(
    requested: int, images: int, expected: int
) -> None:
    """Batch size 2: one batch leaves nothing to decode ahead, two leave one."""
    assert inference.worker_count(requested, images, 2) == expected


@pytest.mark.parametrize(
    ("setting", "device", "cores", "expected"),
    [
        (None, "cpu", 8, 0),
        (None, "cuda", 8, 2),
        (None, "cuda:1", 2, 1),
        (None, "cuda", 1, 0),
        (3, "cpu", 8, 3),
        (0, "cuda", 8, 0),
    ],
)
def test_decoding_workers_default_to_none_on_the_cpu_and_two_beside_a_gpu(
    setting: int | None, device: str, cores: int, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    settings = Settings(_env_file=None, predict_workers=setting, device=device)
    assert predict.decoding_workers(settings) == expected
