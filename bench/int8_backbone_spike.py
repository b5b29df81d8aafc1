"""Spike for issue 17 (not the product yet): the detector's backbone + FPN at batch 1, torch eager
fp32 (BN folded) against ONNX Runtime fp32 and ONNX Runtime static int8 (QDQ, per-channel
weights, calibrated on 16 random images: speed only, no accuracy), all in this run.

    .venv/bin/pip install --target /tmp/ortpkgs onnx onnxruntime   # not in scripts/setup.sh yet
    rm -rf /tmp/ortpkgs/numpy*   # keep the virtualenv's numpy
    PYTHONPATH=.:/tmp/ortpkgs .venv/bin/python -m bench.int8_backbone_spike r101-800

Measured 2026-12-07 on the 2-core AMD EPYC (avx2, avx512_vnni, avx512_bf16, no amx), while
another job shared the cores (ratios are within one run):

    r101-800: eager 4.342 s, channels_last 4.287 s, ORT fp32 2.919 s, ORT int8 0.812 s (5.35x)
    small:    eager 0.496 s, channels_last 0.357 s, ORT fp32 0.259 s, ORT int8 0.088 s (5.63x)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml_backend.detector.config import load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.optimize import fold_batchnorm
from ml_backend.runtime import flush_denormals


class Features(nn.Module):
    """The backbone + FPN with a tuple out, as ONNX export wants."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x).values())


def timed(run: Callable[[], Any], reps: int = 5) -> float:
    run()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quantized(fp32: Path, size: int) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class RandomImages(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.left = iter([{"x": torch.rand(1, 3, size, size).numpy()} for _ in range(16)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.left, None)

    pre, out = fp32.with_name("pre.onnx"), fp32.with_name("int8.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(
        str(pre),
        str(out),
        RandomImages(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def main() -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("needs onnx and onnxruntime: see the docstring")
    flush_denormals()
    config = load_config(sys.argv[1] if len(sys.argv) > 1 else "r101-800")
    detector = FasterRCNNDetector(config)
    detector.model.eval()
    fold_batchnorm(detector.model.backbone.body)
    features = Features(detector.model.backbone).eval()
    size = config.image_size
    x = torch.rand(1, 3, size, size)
    fp32 = Path(tempfile.mkdtemp()) / "fp32.onnx"
    torch.onnx.export(features, (x,), str(fp32), opset_version=17, dynamo=False, input_names=["x"])
    int8 = quantized(fp32, size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    cpu = ["CPUExecutionProvider"]
    s32 = ort.InferenceSession(str(fp32), options, providers=cpu)
    s8 = ort.InferenceSession(str(int8), options, providers=cpu)
    with torch.inference_mode():
        eager = timed(lambda: features(x))
        features.to(memory_format=torch.channels_last)
        last = timed(lambda: features(x.contiguous(memory_format=torch.channels_last)))
    ort32 = timed(lambda: s32.run(None, {"x": x.numpy()}))
    ort8 = timed(lambda: s8.run(None, {"x": x.numpy()}))
    print(
        f"{config.name} backbone+FPN batch 1: eager {eager:.3f} s, channels_last {last:.3f} s, "
        f"ORT fp32 {ort32:.3f} s, ORT int8 {ort8:.3f} s ({eager / ort8:.2f}x eager, "
        f"{ort32 / ort8:.2f}x ORT fp32)"
    )


if __name__ == "__main__":
    main()
