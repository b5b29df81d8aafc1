"""bench/detector_speed.py: the JSON variants, the int8 engines on the tiny config, and the GPU
path run on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest

from bench.detector_speed import (
    BASELINE,
    INT8,
    _int8_pt2e,
    accelerator_speed,
    speed,
    table,
    variants_json,
)
from core.birads import Birads
from ml_backend.detector.config import load_config
from ml_backend.detector.frcnn import FasterRCNNDetector, to_input
from ml_backend.detector.interface import ImagePrediction
from ml_backend.runtime import CPU_FLAGS

ENGINE_PACKAGE = {"int8-ort": "onnxruntime", "int8-pt2e": "torchao", "int8-openvino": "nncf"}


def test_each_variant_has_its_ratio_and_map_cost() -> None:
    speed_rows = {
        BASELINE: {"s_per_img_batch1": 1.0, "s_per_img_batch4": 0.8, "speedup_batch1": 1.0},
        "int8-ort": {
            "s_per_img_batch1": 0.5,
            "s_per_img_batch4": 0.2,
            "speedup_batch1": 2.0,
            "speedup_batch4": 4.0,
            "peak_rss_mb": 900,
            "rss_growth_mb": 120,
            "timed_peak_rss_mb": 700,
        },
        "int8-pt2e": {"s_per_img_batch1": 0.4, "speedup_batch1": 2.5},
        "int8-openvino": {"error": "ImportError: No module named 'nncf'"},
    }
    quality = {
        BASELINE: {"map50": 0.2, "lesion_map50": 0.40},
        "int8-ort": {"map50": 0.1, "lesion_map50": 0.395},
        "int8-pt2e": {"error": "RuntimeError: no"},
    }
    rows = {r["name"]: r for r in variants_json(speed_rows, quality)}
    ort = rows["int8-ort"]
    assert (ort["ratio_vs_eager"], ort["ratio_vs_eager_b4"], ort["s_per_img_b4"]) == (2.0, 4.0, 0.2)
    assert (ort["peak_rss_mb"], ort["rss_growth_mb"], ort["timed_peak_rss_mb"]) == (900, 120, 700)
    assert ort["map50_drop"] == 0.5  # points of lesion mAP@0.5, not of the 5-class mAP
    assert rows[BASELINE]["map50_drop"] == 0.0
    assert rows["int8-pt2e"]["map50_drop"] is None and rows["int8-pt2e"]["map50_error"]
    assert rows["int8-openvino"]["map50_drop"] is None and "error" in rows["int8-openvino"]
    assert all(r["map50_drop"] is None for r in variants_json(speed_rows, None))
    text = table(variants_json(speed_rows, quality)).splitlines()
    assert "| int8-ort | 0.500 | 0.200 | 2.00x | 4.00x | 900 (+120) | 700 | +0.50 |" in text
    assert any(line.startswith("| int8-openvino | error: ImportError") for line in text)


def test_json_run_on_this_cpu() -> None:
    args = ["--config", "tiny", "--reps", "1", "--only", "int8-ort", "--json"]
    args += ["--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.detector_speed", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.startswith("cpu flags: avx2 ")
    report = json.loads(done.stdout)
    names = [v["name"] for v in report["variants"]]
    assert names == [BASELINE, "int8-ort"]
    assert report["variants"][0]["ratio_vs_eager"] == 1.0
    for variant in report["variants"]:
        assert "error" not in variant, variant
        assert variant["s_per_img_b1"] > 0 and variant["s_per_img_b4"] > 0
        assert variant["ratio_vs_eager"] > 0 and variant["map50_drop"] is None
        assert variant["peak_rss_mb"] > 0
        growth, timed = variant["rss_growth_mb"], variant["timed_peak_rss_mb"]
        assert growth is None or 0 <= growth <= variant["peak_rss_mb"]
        assert timed is None or 0 < timed <= variant["peak_rss_mb"]
    assert "peak_rss_mb" in report["rss"]
    assert "| int8-ort | " in done.stderr  # the table
    assert set(CPU_FLAGS) <= set(report["cpu"])


def _well_formed(pred: ImagePrediction, space: tuple[Birads, ...]) -> bool:
    return (
        all(
            len(d.xyxy) == 4
            and d.xyxy[0] <= d.xyxy[2]
            and d.xyxy[1] <= d.xyxy[3]
            and d.category in space
            and set(d.probs) == set(space)
            and 0.0 <= d.score <= 1.0
            for d in pred.detections
        )
        and 0.0 <= pred.uncertainty <= 1.0
    )


def _form(preds: list[ImagePrediction], space: tuple[Birads, ...]) -> list[tuple[bool, bool]]:
    """Per image: has detections, and every one is well formed."""
    return [(bool(p.detections), _well_formed(p, space)) for p in preds]


def test_int8_engines_detect_like_eager(capfd: pytest.CaptureFixture[str]) -> None:
    config = load_config("tiny")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (200, 180, 3), dtype=np.uint8) for _ in range(2)]
    calibration = [to_input(image, config.image_size) for image in images]
    space = config.box_categories
    eager = FasterRCNNDetector(config).predict(images)
    assert _form(eager, space) == [(True, True)] * 2  # random weights still give boxes
    for name, make in INT8.items():
        det = FasterRCNNDetector(config)
        try:
            if make is _int8_pt2e:  # eager: torch.compile's own C++ build takes 30 CPU-s
                _int8_pt2e(det, calibration, compile_graph=False)
            else:
                make(det, calibration)
        except ImportError:  # not installed here (the bench extra): speed() reports it
            assert find_spec(ENGINE_PACKAGE[name]) is None, name
            continue
        assert type(det.model.backbone).__name__ != "BackboneWithFPN", name  # the engine runs
        preds = det.predict(images)
        assert _form(preds, space) == _form(eager, space), name
        assert all(len(p.detections) <= config.box_detections_per_img for p in preds)
    assert capfd.readouterr().out == ""  # stdout is --json's (NNCF logs there by default)


def test_a_missing_engine_is_that_variants_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    monkeypatch.setitem(sys.modules, "nncf", None)
    rows = speed(load_config("tiny"), 1, "int8-openvino")
    error = rows["int8-openvino"]["error"]
    assert error.startswith(("ImportError", "ModuleNotFoundError")) and "nncf" in error
    assert rows[BASELINE]["s_per_img_batch1"] > 0  # the run went on


def test_the_gpu_measurement_runs_on_a_cpu() -> None:
    rows = accelerator_speed(load_config("tiny"), 1, "cpu", batches=(1, 2), train_batches=(2,))
    assert rows["device_name"] == "cpu"
    for name in ("eager fp32", "AMP + channels_last"):
        assert set(rows[name]) == {"s_per_img_b1", "s_per_img_b2"}
        assert all(v > 0 for v in rows[name].values())
    assert rows["train_step_s_b2"] > 0
