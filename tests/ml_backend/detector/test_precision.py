"""The pre-label arithmetic: int8 graph beside the version, and what `auto` trusts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from core.settings import Precision
from ml_backend.detector import precision
from ml_backend.detector.config import load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.int8 import feature_names, quantize_backbone
from ml_backend.detector.optimize import optimize_for_inference
from ml_backend.detector.precision import (
    PrecisionChoice,
    PrecisionTrial,
    apply_precision,
    choose,
    int8_graph,
    read_choice,
    sha256,
    write_choice,
)
from ml_backend.runtime import flag_line


def _trial(name: Precision, seconds: float, drop: float, bound: float = 0.5) -> PrecisionTrial:
    return PrecisionTrial(
        precision=name, s_per_img=seconds, map50=0.7, map50_drop=drop, within_bound=drop <= bound
    )


def test_choose_takes_the_fastest_path_within_the_bound() -> None:
    fp32, bf16, int8 = _trial("fp32", 1.0, 0.0), _trial("bf16", 0.5, 0.4), _trial("int8", 0.2, 0.3)
    assert choose([fp32, bf16, int8]) == "int8"
    assert choose([fp32, bf16, _trial("int8", 0.2, 1.7)]) == "bf16"  # int8 costs too much
    assert choose([fp32, _trial("int8", 0.2, 0.6)]) == "fp32"
    assert choose([_trial("int8", 0.2, 3.0)]) == "fp32"  # nothing passes: the reference


def _detector() -> FasterRCNNDetector:
    torch.manual_seed(0)
    config = load_config("tiny").model_copy(update={"box_score_thresh": 0.0})
    detector = FasterRCNNDetector(config)
    optimize_for_inference(detector, channels_last=False)
    return detector


def _images(n: int, size: int) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    for _ in range(n):
        yield torch.rand(3, size, size, generator=generator)


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 graph and a record choosing it, as `labeler models optimize` leaves them."""
    folder = tmp_path_factory.mktemp("derived")
    detector = _detector()
    size = detector.config.image_size
    staged = quantize_backbone(detector, _images(4, size), folder / "staged.onnx")
    graph = int8_graph(folder, sha256(staged))
    staged.rename(graph)
    write_choice(
        folder,
        PrecisionChoice(
            version="v1",
            chosen="int8",
            max_map_drop=0.5,
            trials=(_trial("fp32", 1.0, 0.0), _trial("int8", 0.3, 0.1)),
            cpu=flag_line(),
            images=4,
            calibration_images=4,
            int8_sha256=sha256(graph),
            feature_names=tuple(feature_names(detector)),
        ),
    )
    return folder


def test_int8_backbone_gives_features_close_to_fp32(derived: Path) -> None:
    reference, quantized = _detector(), _detector()
    assert apply_precision(quantized, derived, "auto") == "int8"
    assert quantized.precision == "int8"
    x = torch.stack(list(_images(2, reference.config.image_size)))  # the engine's fixed size
    x = (x - 0.45) / 0.225  # about what the model's transform feeds the backbone
    with torch.inference_mode():
        want, got = reference.model.backbone(x), quantized.model.backbone(x)
    assert list(got) == list(want)
    for name in want:
        assert got[name].shape == want[name].shape
        error = (got[name] - want[name]).abs().mean() / want[name].abs().mean()
        assert error < 0.15, (name, float(error))
    (pred,) = quantized.predict([np.full((120, 100), 90, dtype=np.uint8)])
    assert all(0 <= d.score <= 1 for d in pred.detections)


def test_auto_without_a_record_is_fp32(tmp_path: Path) -> None:
    detector = _detector()
    assert apply_precision(detector, tmp_path, "auto") == "fp32"
    assert not detector.bf16
    assert apply_precision(detector, tmp_path, "int8") == "fp32"  # nothing to run int8 with


def test_auto_distrusts_a_choice_measured_on_another_cpu(
    derived: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision, "flag_line", lambda: "cpu flags: avx2 yes, others no")
    detector = _detector()
    assert apply_precision(detector, derived, "auto") == "fp32"
    assert "measured on another CPU" in caplog.text
    assert apply_precision(_detector(), derived, "int8") == "int8"  # asked for: obeyed


def test_a_changed_int8_graph_is_never_run(derived: Path, tmp_path: Path) -> None:
    copy = tmp_path / "derived"
    copy.mkdir()
    choice = read_choice(derived)
    assert choice is not None and choice.int8_sha256 is not None
    graph = int8_graph(derived, choice.int8_sha256)
    (copy / graph.name).write_bytes(graph.read_bytes() + b"\0")
    (copy / precision.RECORD).write_text((derived / precision.RECORD).read_text())
    assert apply_precision(_detector(), copy, "auto") == "fp32"
    (copy / precision.RECORD).write_text("{not json")
    assert read_choice(copy) is None
    assert apply_precision(_detector(), copy, "auto") == "fp32"


def test_a_new_record_drops_graphs_no_record_names(derived: Path, tmp_path: Path) -> None:
    old = tmp_path / "backbone-int8-0000000000000000.onnx"
    old.write_bytes(b"old")
    choice = read_choice(derived)
    assert choice is not None
    write_choice(tmp_path, choice.model_copy(update={"int8_sha256": None, "chosen": "fp32"}))
    assert not old.exists()
    assert apply_precision(_detector(), tmp_path, "auto") == "fp32"  # the choice is obeyed
    assert read_choice(tmp_path) == choice.model_copy(
        update={"int8_sha256": None, "chosen": "fp32"}
    )
