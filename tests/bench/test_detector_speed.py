"""bench/detector_speed.py: the CPU flag line, the JSON variants, and the GPU path run on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.detector_speed import (
    CPU_FLAGS,
    accelerator_speed,
    cpu_flags,
    flag_line,
    variants_json,
)
from ml_backend.detector.config import load_config


def test_flags_are_read_from_cpuinfo_not_assumed(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni\n")
    flags = cpu_flags(info)
    assert {k: flags[k] for k in CPU_FLAGS} == {
        "avx2": True,
        "avx512_vnni": True,
        "avx512_bf16": False,
        "amx": False,
    }
    assert flag_line(flags).startswith("cpu flags: avx2 yes, avx512_vnni yes, avx512_bf16 no")
    assert not any(cpu_flags(tmp_path / "missing")[k] for k in CPU_FLAGS)


def test_each_variant_has_its_ratio_and_map_cost() -> None:
    speed = {
        "eager fp32 (baseline)": {"s_per_img_batch1": 1.0, "speedup_batch1": 1.0},
        "BN folded + channels_last": {"s_per_img_batch1": 0.5, "speedup_batch1": 2.0},
        "bf16 autocast": {"error": "RuntimeError: no"},
    }
    quality = {
        "eager fp32 (baseline)": {"map50": 0.40},
        "BN folded + channels_last": {"map50": 0.395},
    }
    rows = {r["name"]: r for r in variants_json(speed, quality)}
    assert rows["BN folded + channels_last"]["ratio_vs_eager"] == 2.0
    assert rows["BN folded + channels_last"]["map50_drop"] == 0.5  # points
    assert rows["eager fp32 (baseline)"]["map50_drop"] == 0.0
    assert rows["bf16 autocast"]["map50_drop"] is None and "error" in rows["bf16 autocast"]
    assert all(r["map50_drop"] is None for r in variants_json(speed, None))


def test_json_run_on_this_cpu() -> None:
    args = ["--config", "tiny", "--reps", "1", "--only", "int8", "--json"]
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
    assert names == ["eager fp32 (baseline)", "int8 dynamic (Linear)"]
    assert report["variants"][0]["ratio_vs_eager"] == 1.0
    for variant in report["variants"]:
        assert variant["s_per_img_b1"] > 0 and variant["map50_drop"] is None
    assert set(CPU_FLAGS) <= set(report["cpu"])


def test_the_gpu_measurement_runs_on_a_cpu() -> None:
    rows = accelerator_speed(load_config("tiny"), 1, "cpu", batches=(1, 2), train_batches=(2,))
    assert rows["device_name"] == "cpu"
    for name in ("eager fp32", "AMP + channels_last"):
        assert set(rows[name]) == {"s_per_img_b1", "s_per_img_b2"}
        assert all(v > 0 for v in rows[name].values())
    assert rows["train_step_s_b2"] > 0
