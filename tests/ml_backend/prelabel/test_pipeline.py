"""The one pre-label pipeline: grade, calibrate, categorise, split plain 4, record the parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from core.birads import Birads
from core.results import Birads4Threshold, DetectorVersionMetrics
from core.settings import Settings
from ml_backend.detector.interface import RGBImage
from ml_backend.encoder.checkpoint import save_encoder
from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.model import LesionEncoder
from ml_backend.prelabel.calibration import Calibrator
from ml_backend.prelabel.category import ShownBoxes
from ml_backend.prelabel.pipeline import PrelabelPipeline, Splitter, active_splitter, open_pipeline
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import ENCODER_KIND, NO4_KIND
from tests.ml_backend.evaluation.helpers import det, pred
from tests.ml_backend.prelabel.fakes import Fixed, plain_4

BOX = (10.0, 10.0, 50.0, 50.0)
IMAGE: RGBImage = np.zeros((64, 64, 3), dtype=np.uint8)


def _splitter(p5: float, threshold: float = 0.4) -> tuple[Splitter, Fixed]:
    no4 = Fixed(pred(det(BOX, Birads.B5, 0.8, {Birads.B5: p5, Birads.B3: 1 - p5})))
    return Splitter("no4-v1", no4, threshold), no4


@pytest.mark.parametrize(("p5", "expected"), [(0.9, Birads.B4B), (0.1, Birads.B4A)])
def test_a_plain_4_call_is_split_by_the_active_no4_model(p5: float, expected: Birads) -> None:
    splitter, _ = _splitter(p5)
    pipeline = PrelabelPipeline("v1", Fixed(plain_4()), ShownBoxes(), splitter=splitter)
    prelabel = pipeline.predict([IMAGE])[0]
    assert prelabel.category is expected
    assert [d.category for d in prelabel.prediction.detections] == [expected]  # readers see it
    assert prelabel.source.splitter == "no4-v1"
    assert prelabel.row(7).image_birads is expected


def test_without_a_splitter_plain_4_stays_and_says_so() -> None:
    prelabel = PrelabelPipeline("v1", Fixed(plain_4()), ShownBoxes()).predict([IMAGE])[0]
    assert prelabel.category is Birads.B4
    assert prelabel.source.splitter is None and prelabel.source.detector == "v1"


def test_the_splitter_runs_only_on_plain_4_calls() -> None:
    splitter, no4 = _splitter(0.9)
    three = pred(det(BOX, Birads.B3, 0.9, {Birads.B3: 0.9, Birads.B5: 0.1}))
    prelabel = PrelabelPipeline("v1", Fixed(three), ShownBoxes(), splitter=splitter).predict(
        [IMAGE]
    )[0]
    assert prelabel.category is Birads.B3 and no4.calls == 0
    assert prelabel.source.splitter is None  # nothing was split


def test_calibrated_probabilities_per_image_and_per_box_are_stored() -> None:
    calibrator = Calibrator(
        coef=4.0, intercept=-2.0, n_fit=10, target_sensitivity=0.95, threshold=0.3
    )
    answer = pred(
        det(BOX, Birads.B5, 0.9, {Birads.B5: 0.8, Birads.B3: 0.2}),
        det((60.0, 10.0, 90.0, 40.0), Birads.B2, 0.3, {Birads.B2: 0.9, Birads.B5: 0.1}),
    )
    pipeline = PrelabelPipeline("v1", Fixed(answer), ShownBoxes(), calibrator=calibrator)
    prelabel = pipeline.predict([IMAGE])[0]
    assert prelabel.probability == pytest.approx(calibrator(0.8))  # the top box's mass
    assert prelabel.box_probabilities == pytest.approx((calibrator(0.8), calibrator(0.1)))
    row = prelabel.row(3)
    assert row.malignancy == pytest.approx(calibrator(0.8))
    assert [b.malignancy for b in row.boxes] == pytest.approx([calibrator(0.8), calibrator(0.1)])
    assert row.produced_by is not None and row.produced_by.calibrated


def test_uncalibrated_probability_is_the_raw_grader_score() -> None:
    answer = pred(det(BOX, Birads.B5, 0.9, {Birads.B5: 0.7, Birads.B3: 0.3}))
    prelabel = PrelabelPipeline("v1", Fixed(answer), ShownBoxes()).predict([IMAGE])[0]
    assert prelabel.probability == pytest.approx(0.7) and not prelabel.source.calibrated


@dataclass
class _Registry:
    """Only what active_splitter reads; a real registry is exercised by the job tests."""

    info: Any
    encoder: Any = None

    def active(self, kind: str) -> Any:
        assert kind in (NO4_KIND, ENCODER_KIND)
        return self.info if kind == NO4_KIND else self.encoder

    def intact_path(self, version_id: str) -> Path:
        return Path("/nonexistent") / version_id


@dataclass
class _Info:
    id: str
    metrics: Any


def _metrics(threshold: Birads4Threshold | None) -> DetectorVersionMetrics:
    return DetectorVersionMetrics(n_train_images=5, val=None, birads4_threshold=threshold)


def test_the_active_splitter_needs_a_stored_threshold() -> None:
    load = lambda path: Fixed(plain_4())  # noqa: E731
    threshold = Birads4Threshold(value=0.35, chosen_from="plain-4", n_images=4)
    found = active_splitter(_Registry(_Info("n1", _metrics(threshold))), load)  # type: ignore[arg-type]
    assert found is not None and found.version == "n1" and found.threshold == 0.35
    assert active_splitter(_Registry(_Info("n2", _metrics(None))), load) is None  # type: ignore[arg-type]
    assert active_splitter(_Registry(None), load) is None  # type: ignore[arg-type]


def test_open_pipeline_loads_the_versions_calibrator_and_the_splitter(tmp_path: Path) -> None:
    calibrator = Calibrator(coef=1.0, intercept=0.0, n_fit=4, target_sensitivity=0.9, threshold=0.5)
    calibrator.save(tmp_path)
    threshold = Birads4Threshold(value=0.5, chosen_from="plain-4", n_images=4)

    class Registry(_Registry):
        def intact_path(self, version_id: str) -> Path:
            return tmp_path

    registry = cast(ModelRegistry, Registry(_Info("n1", _metrics(threshold))))
    pipeline = open_pipeline(
        registry, "v1", Settings(_env_file=None), lambda path: Fixed(plain_4())
    )
    assert pipeline.calibrator == calibrator and pipeline.splitter is not None
    assert pipeline.source.calibrated and pipeline.source.splitter == "n1"
    no_4 = Fixed(plain_4(), label_space=(Birads.B1, Birads.B2, Birads.B3, Birads.B5))
    assert (
        open_pipeline(registry, "v1", Settings(_env_file=None), lambda path: no_4).splitter is None
    )


def test_open_pipeline_grades_with_the_active_encoder_and_its_calibrator(tmp_path: Path) -> None:
    detector_folder, encoder_folder = tmp_path / "v1", tmp_path / "e1"
    detector_folder.mkdir()
    Calibrator(coef=1.0, intercept=0.0, n_fit=4, target_sensitivity=0.9, threshold=0.5).save(
        detector_folder
    )
    save_encoder(LesionEncoder(EncoderConfig(crop_size=32, birads_head=True)), encoder_folder)
    encoder_cal = Calibrator(
        grader="encoder", coef=2.0, intercept=-1.0, n_fit=4, target_sensitivity=0.9, threshold=0.4
    )
    encoder_cal.save(encoder_folder)

    class Registry(_Registry):
        def intact_path(self, version_id: str) -> Path:
            return tmp_path / version_id

    registry = cast(ModelRegistry, Registry(None, _Info("e1", None)))
    pipeline = open_pipeline(registry, "v1", Settings(_env_file=None), lambda p: Fixed(plain_4()))
    assert pipeline.grader.name == "encoder" and pipeline.calibrator == encoder_cal
    source = pipeline.predict([IMAGE])[0].source
    assert (source.grader, source.grader_version, source.calibrated) == ("encoder", "e1", True)
