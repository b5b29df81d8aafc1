"""Detector speed: R101-FPN at 800x800, eager fp32 torchvision as the baseline, against cheaper
variants, all measured in this run. With --model/--home, each variant's mAP cost is measured on a
trained model (the small one from bench/detector_quality.py).

    .venv/bin/python bench/detector_speed.py --model HOME/models/VERSION --home HOME --split val
    .venv/bin/python bench/detector_speed.py --device cuda   # a GPU: AMP + channels_last

CPU variants: fewer RPN proposals (300 instead of 1000), BatchNorm folded + channels_last, both,
torch.compile of the backbone, bf16 autocast, int8 dynamic quantization of the Linear layers,
ONNX Runtime fp32, and three int8 engines for the backbone + FPN (BN folded first, static
quantization with the stem conv kept in fp32; the RPN and box head stay eager fp32):

- `int8-ort`: the product path (ml_backend.detector.int8: ONNX Runtime QDQ);
- `int8-pt2e`: torchao PT2E with the x86 inductor quantizer, then torch.compile with freezing.
  Its shapes are fixed: each batch size compiles once, in its warm-up (`warmup_s_b1`, `_b4`);
- `int8-openvino`: OpenVINO + NNCF, the CPU plugin at torch's thread count, fp32 elsewhere.

The engines calibrate on SPEED_CALIBRATION random images for the speed part and, with --model,
on --calibration-images train images (the seed-0 draw `labeler models optimize` makes). Each is
imported when it runs: a missing package or a failing engine is that variant's `error` entry,
and the run goes on. CUDA variants: eager fp32 and fp16 AMP + channels_last, at batch 1, 8 and 32,
and a training step at batch 2 and 8. Weights are random for the speed part: time does not depend
on their values (proposal counts are capped). Latency is the median of --reps runs at batch 1
(--reps // 2 at batch 4) after one warm-up. Memory per variant: RSS_NOTE. The first line names
the CPU's flags (avx2, avx512_vnni, avx512_bf16, amx) read at run time; then a table (on stderr
with `--json`, which prints one object whose `variants` list holds, per variant, `name`,
`s_per_img_b1`, `s_per_img_b4`, `ratio_vs_eager` (batch 1; `ratio_vs_eager_b4`), `peak_rss_mb`,
`rss_growth_mb`, `timed_peak_rss_mb` and `map50_drop`: points of lesion mAP@0.5 lost against
eager on the first --n-images images of --split, null where not measured).

Measured 2026-12-07 on the 2-core AMD EPYC (avx2, avx512_vnni, avx512_bf16, no amx; torch
kernels AVX512; 2 threads), the cores shared with another engineer's jobs (ratios are within one
run). Speed: r101-800, random weights, --reps 3. mAP: the small BUS-BRA model, the first 120
validation images, int8 calibrated on 100 train images. 6 min 47 s; the JSON is
bench/results/detector_speed/int8-r101-800-small-val120.json.

    .venv/bin/python bench/detector_speed.py --only int8 \\
        --model /tmp/pq-home/models/detector-20261207-105034-2341 --home /tmp/pq-home \\
        --split val --n-images 120 --json \\
        > bench/results/detector_speed/int8-r101-800-small-val120.json

| variant | s/img b1 | s/img b4 | vs eager b1 | vs eager b4 | peak RSS MB (growth) | peak RSS MB while timed | lesion mAP@0.5 drop (points) |
| --- | --- | --- | --- | --- | --- | --- | --- |
| eager fp32 (baseline) | 1.816 | 1.816 | 1.00x | 1.00x | 3608 (+2829) | 3608 | +0.00 |
| int8 dynamic (Linear) | 1.828 | 2.287 | 0.99x | 0.79x | 2770 (+1987) | 2770 | -0.11 |
| int8-ort | 0.772 | 0.774 | 2.35x | 2.35x | 6376 (+5590) | 2459 | +0.15 |
| int8-pt2e | 0.653 | 0.706 | 2.78x | 2.57x | 2390 (+1528) | 2390 | -0.21 |
| int8-openvino | 0.678 | 0.688 | 2.68x | 2.64x | 3697 (+2366) | 3178 | -0.01 |

(Eager lesion mAP@0.5: 0.7239; a negative drop is a gain.) At batch 1 PT2E was fastest, with
OpenVINO within 4%: two earlier runs that afternoon, before the bench's last changes (the
timed-RSS column, NNCF's log lines off stdout), measured b1 PT2E 0.659 / 0.659, OpenVINO
0.667 / 0.656, ONNX Runtime 0.771 / 0.777 s/img and the same mAP costs, so the two tie and both
take 12-16% less time than ONNX Runtime. On these 120 images no engine costs more than 0.15
points (ONNX Runtime); PT2E gains 0.21. The RPN and box head stay fp32, so the whole model gains
2.3-2.8x where the backbone alone gained 5.4x (the issue-17 spike). PT2E compiles for 9-11 s per
batch size in every process. ONNX Runtime's quantization step (export, calibration session)
peaks at 6.3 GB at 800x800, flat in the image count (6257 MB with 2 calibration images, 6258 MB
with 10); served, it is second smallest after PT2E.
"""  # noqa: E501 (the table as the bench prints it)

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import logging
import re
import resource
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext, redirect_stdout, suppress
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ml_backend.detector.config import DetectorConfig, load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.int8 import (
    Features,
    backbone_inputs,
    feature_names,
    quantize_backbone,
    use_int8,
)
from ml_backend.detector.optimize import limit_proposals, optimize_for_inference
from ml_backend.runtime import cpu_flags, flag_line, flush_denormals

Context = Callable[[], AbstractContextManager[Any]]
Variant = Callable[[FasterRCNNDetector], Context]  # changes a detector in place
Calibration = Sequence[torch.Tensor]  # CHW float images in [0, 1], as frcnn.to_input makes them
Int8Variant = Callable[[FasterRCNNDetector, Calibration], Context]
BASELINE = "eager fp32 (baseline)"
SPEED_CALIBRATION = 4  # random images: the speed part's int8 ranges (time ignores their values)


def _eager(det: FasterRCNNDetector) -> Context:
    return nullcontext


def _fewer_proposals(det: FasterRCNNDetector) -> Context:
    limit_proposals(det, 300)
    return nullcontext


def _folded(det: FasterRCNNDetector) -> Context:
    optimize_for_inference(det)
    return nullcontext


def _folded_fewer(det: FasterRCNNDetector) -> Context:
    _fewer_proposals(det)
    return _folded(det)


def _compiled(det: FasterRCNNDetector) -> Context:
    _folded(det)
    det.model.backbone = torch.compile(det.model.backbone)  # static shapes at a fixed size
    return nullcontext


def _bf16(det: FasterRCNNDetector) -> Context:
    return lambda: torch.autocast("cpu", dtype=torch.bfloat16)


def _folded_bf16(det: FasterRCNNDetector) -> Context:
    _folded(det)
    return _bf16(det)


def _int8(det: FasterRCNNDetector) -> Context:
    det.model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
        det.model, {nn.Linear}, dtype=torch.qint8
    )
    return nullcontext


def _onnx(det: FasterRCNNDetector) -> Context:
    """Export (opset 17, batch 1 at the config's fixed size) and run under ONNX Runtime."""
    import onnxruntime as ort

    size = det.config.image_size
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    det.model.eval()
    dummy = [torch.rand(3, size, size)]
    torch.onnx.export(det.model, (dummy,), str(path), opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    det.model = _OrtModel(session)
    return nullcontext


class _OrtModel:
    """Stands in for the torch model inside FasterRCNNDetector.predict."""

    def __init__(self, session: Any) -> None:
        self.session, self.name = session, session.get_inputs()[0].name

    def eval(self) -> _OrtModel:
        return self

    def __call__(self, batch: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        keys = ("boxes", "labels", "scores", "probs")  # the exported outputs, in order
        outs = [self.session.run(None, {self.name: x.numpy()}) for x in batch]
        return [{k: torch.from_numpy(v) for k, v in zip(keys, out, strict=True)} for out in outs]


VARIANTS: dict[str, Variant] = {
    BASELINE: _eager,
    "300 proposals": _fewer_proposals,
    "BN folded + channels_last": _folded,
    "BN folded + channels_last + 300 proposals": _folded_fewer,
    "torch.compile backbone (+ BN folded)": _compiled,
    "bf16 autocast": _bf16,
    "BN folded + channels_last + bf16": _folded_bf16,
    "int8 dynamic (Linear)": _int8,
    "ONNX Runtime fp32 (opset 17)": _onnx,
}

# The int8 engines of issue 17. Each quantizes the BN-folded backbone + FPN (nearly all of the
# arithmetic) statically, calibrated on images the model's own transform has prepared, with the
# stem conv left in fp32 as the product does; the RPN and box head stay eager fp32. Each engine is
# imported when its variant runs, so a missing package is that variant's error, not the run's.

STEM = "backbone.body.conv1"  # in the backbone + FPN module (int8.Features)


def _int8_ort(det: FasterRCNNDetector, calibration: Calibration) -> Context:
    """The product path (ml_backend.detector.int8): ONNX Runtime static QDQ int8."""
    optimize_for_inference(det)
    names = feature_names(det)
    with tempfile.TemporaryDirectory(prefix="int8-ort-") as tmp:  # the session keeps the graph
        use_int8(det, quantize_backbone(det, calibration, Path(tmp) / "int8.onnx"), names)
    return nullcontext


def _int8_pt2e(
    det: FasterRCNNDetector, calibration: Calibration, *, compile_graph: bool = True
) -> Context:
    """torchao PT2E with the x86 inductor quantizer, then torch.compile (inductor, freezing).
    The shapes are fixed: each new batch size compiles once more, in its warm-up call.
    `compile_graph=False` runs the converted graph eagerly (the tests: inductor's C++ build of
    the kernels takes half a CPU-minute; the quantized graph is the same)."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    names, features, images = _backbone_inputs(det, calibration)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    quantizer.set_module_name_qconfig(STEM, None)
    # Strict export: the non-strict one gives a ResNet block's twice-called `relu` a single
    # partition with two outputs, which the quantizer rejects. A batch-1 example would fix the
    # batch size at 1.
    batch = torch.export.Dim("batch", min=1, max=64)
    example = (torch.stack([images[0], images[0]]),)
    graph = torch.export.export(features, example, dynamic_shapes=({0: batch},), strict=True)
    prepared = prepare_pt2e(graph.module(), quantizer)
    with torch.no_grad():
        for image in images:
            prepared(image[None])
    converted = convert_pt2e(prepared)
    if not compile_graph:
        _swap_backbone(det, converted, names)
        return nullcontext
    _swap_backbone(det, torch.compile(converted, dynamic=False), names)
    return lambda: torch._inductor.config.patch(freezing=True)  # as torchao advises for CPU


def _int8_openvino(det: FasterRCNNDetector, calibration: Calibration) -> Context:
    """OpenVINO + NNCF post-training quantization, compiled for the CPU with torch's thread
    count; what stays unquantized runs in fp32 (OpenVINO's default on a bf16 CPU is bf16)."""
    import nncf
    import openvino as ov

    if not isinstance(det.model.backbone.fpn.extra_blocks, LastLevelMaxPool):
        raise ValueError("the OpenVINO variant recomputes the FPN's LastLevelMaxPool level")
    names, features, images = _backbone_inputs(det, calibration)
    example = images[0][None]
    with torch.no_grad():
        shape = ov.PartialShape([-1, *example.shape[1:]])  # any batch size
        model = ov.convert_model(features, example_input=example, input=[shape])
    stem = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    _to_stderr(logging.getLogger("nncf"))
    with redirect_stdout(sys.stderr):  # its progress bars: stdout is --json's
        quantized = nncf.quantize(
            model,
            nncf.Dataset([image[None].numpy() for image in images]),
            subset_size=len(images),
            ignored_scope=nncf.IgnoredScope(names=[stem.get_friendly_name()]),
        )
    options = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(quantized, "CPU", options)
    _swap_backbone(det, _OpenVinoLevels(compiled), names)
    return nullcontext


def _to_stderr(logger: logging.Logger) -> None:
    """Move a library's stdout log handler (NNCF logs to stdout) to stderr."""
    stdouts = (sys.stdout, sys.__stdout__)
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in stdouts:
            handler.setStream(sys.stderr)


class _OpenVinoLevels:
    """The compiled graph's feature maps as torch tensors. The last level ("pool": torchvision's
    LastLevelMaxPool, a 1x1 max pool with stride 2) is recomputed in torch from the level before
    it: OpenVINO 2026.4's CPU plugin returned it scaled by about 3e-5 after NNCF quantization."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.compiled(x.contiguous().numpy())
        levels = [torch.from_numpy(out[port]) for port in self.compiled.outputs]
        return [*levels[:-1], F.max_pool2d(levels[-2], 1, 2, 0)]


def _backbone_inputs(
    det: FasterRCNNDetector, calibration: Calibration
) -> tuple[list[str], nn.Module, list[torch.Tensor]]:
    """BN folded as in the product path; the level names; the backbone + FPN with a tuple out;
    the calibration images as the backbone sees them (after the model's transform)."""
    optimize_for_inference(det)
    names = feature_names(det)
    seen = list(backbone_inputs(det, calibration))
    return names, Features(det.model.backbone).eval(), seen


class _Levels(nn.Module):
    """Stands in for the backbone + FPN as int8.OnnxBackbone does: an engine's feature maps, in
    order, back as the named OrderedDict the RPN and RoI heads read."""

    def __init__(
        self,
        run: Callable[[torch.Tensor], Sequence[torch.Tensor]],
        names: list[str],
        out_channels: int,
    ) -> None:
        super().__init__()
        self.run, self.names, self.out_channels = run, names, out_channels

    def train(self, mode: bool = True) -> _Levels:
        """predict() calls eval(): it stops here, as an exported graph refuses train()/eval()."""
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(zip(self.names, self.run(x), strict=True))


def _swap_backbone(
    det: FasterRCNNDetector, run: Callable[[torch.Tensor], Sequence[torch.Tensor]], names: list[str]
) -> None:
    det.model.backbone = _Levels(run, names, int(det.model.backbone.out_channels))


INT8: dict[str, Int8Variant] = {
    "int8-ort": _int8_ort,
    "int8-pt2e": _int8_pt2e,
    "int8-openvino": _int8_openvino,
}


def _calibrated(make: Int8Variant, calibration: Calibration) -> Variant:
    return lambda det: make(det, calibration)


def all_variants(calibration: Calibration) -> dict[str, Variant]:
    """Every variant, the baseline first; the int8 engines calibrated on `calibration`."""
    return VARIANTS | {name: _calibrated(make, calibration) for name, make in INT8.items()}


def random_images(size: int, count: int) -> list[torch.Tensor]:
    """Calibration for the speed part (random weights): time does not depend on the values."""
    return [torch.rand(3, size, size) for _ in range(count)]


def _latency(det: FasterRCNNDetector, ctx: Context, batch: int, reps: int) -> tuple[float, float]:
    """(median s/img over `reps` runs, s of the warm-up run before them: first-call set-up and
    any compilation)."""
    images = [
        torch.rand(det.config.image_size, det.config.image_size, 3).mul(255).byte().numpy()
        for _ in range(batch)
    ]
    with ctx():
        start = time.perf_counter()
        det.predict(images)
        warm_up = time.perf_counter() - start
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            det.predict(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / batch, warm_up


def _gflops(det: FasterRCNNDetector) -> float:
    x = [torch.rand(3, det.config.image_size, det.config.image_size)]
    det.model.eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        det.model(x)
    return float(counter.get_total_flops()) / 1e9


def _train_step(config: DetectorConfig, reps: int, batch: int, device: str) -> float:
    """Median seconds of one SGD step on `batch` images (fp16 AMP and a grad scaler on CUDA)."""
    torch.manual_seed(0)
    model = FasterRCNNDetector(config, device=device).model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
    s = config.image_size
    images = [torch.rand(3, s, s, device=device) for _ in range(batch)]
    box = torch.tensor([[s * 0.3, s * 0.3, s * 0.6, s * 0.5]], device=device)
    targets = [{"boxes": box, "labels": torch.tensor([1], device=device)}] * batch
    times = []
    for i in range(reps + 1):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
            loss = sum(model(images, targets).values())
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_rss_mb() -> float:
    """The process's peak RSS since it started (getrusage: process-wide, never reset)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


RSS_NOTE = (
    "peak_rss_mb: the process's peak RSS while that variant was built (quantization and "
    "calibration included) and timed; its high-water mark is reset before each variant (Linux "
    "clear_refs), after the previous variant was freed and glibc's malloc_trim. rss_growth_mb: "
    "that peak less the RSS when the variant started. timed_peak_rss_mb: the peak while it was "
    "timed only (reset again after the build): what serving it takes. Where the reset is "
    "refused, peak_rss_mb is the process-wide peak so far (getrusage), the others null."
)


def _run_peak(earlier: float, variants: list[dict[str, Any]]) -> int:
    """The whole run's peak RSS: getrusage's follows the per-variant resets, so the peaks
    before and between them are folded in."""
    return round(max([earlier, _peak_rss_mb(), *(v["peak_rss_mb"] or 0 for v in variants)]))


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MB; None off Linux."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return None if found is None else int(found.group(1)) / 1024


def _start_rss_window() -> float | None:
    """Reset the process's RSS high-water mark to its RSS now; returns that RSS (MB), None where
    the kernel does not allow the reset."""
    gc.collect()  # the previous variant's detector goes first
    with suppress(OSError, AttributeError):  # glibc: the freed heap back to the kernel
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def _peak_since(start: float | None) -> float | None:
    return None if start is None else _status_mb("VmHWM")


def _rss_fields(start: float | None, built: float | None, timed: float | None) -> dict[str, Any]:
    """Peak over the whole variant and its growth; the peak while timed (the serving footprint,
    without a quantizer's calibration). getrusage's process-wide peak where Linux refuses."""
    if start is None or built is None or timed is None:
        return {
            "peak_rss_mb": round(_peak_rss_mb()),
            "rss_growth_mb": None,
            "timed_peak_rss_mb": None,
        }
    peak = max(built, timed)
    return {
        "peak_rss_mb": round(peak),
        "rss_growth_mb": round(peak - start),
        "timed_peak_rss_mb": round(timed),
    }


def _selected(only: str | None, calibration: Calibration) -> dict[str, Variant]:
    """The baseline always runs, so every ratio has its denominator from the same run."""
    variants = all_variants(calibration)
    if not only:
        return variants
    keys = [k.strip().lower() for k in only.split(",")]
    return {
        n: v
        for i, (n, v) in enumerate(variants.items())
        if i == 0 or any(k in n.lower() for k in keys)
    }


def _measure(config: DetectorConfig, make: Variant, reps: int) -> dict[str, Any]:
    """One variant on a fresh random-weight detector: s/img at batch 1 and 4, its build time,
    the warm-up calls (compilation included) and its RSS."""
    start_rss = _start_rss_window()
    torch.manual_seed(0)
    det = FasterRCNNDetector(config)
    start = time.perf_counter()
    ctx = make(det)
    setup = time.perf_counter() - start
    built = _peak_since(start_rss)
    timed_rss = _start_rss_window()
    b1, warm1 = _latency(det, ctx, 1, reps)
    b4, warm4 = _latency(det, ctx, 4, max(1, reps // 2))
    return {
        "b1": b1,
        "b4": b4,
        "setup_s": round(setup, 1),
        "warmup_s_b1": round(warm1, 2),
        "warmup_s_b4": round(warm4, 2),
        **_rss_fields(start_rss, built, _peak_since(timed_rss)),
    }


def speed(config: DetectorConfig, reps: int, only: str | None = None) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    base: tuple[float, float] | None = None
    calibration = random_images(config.image_size, SPEED_CALIBRATION)
    for name, make in _selected(only, calibration).items():
        try:
            measured = _measure(config, make, reps)
        except Exception as exc:  # a variant this machine cannot run is reported, not fatal
            rows[name] = {"error": _error(exc)}
            print(name, rows[name], file=sys.stderr, flush=True)
            continue
        b1, b4 = measured.pop("b1"), measured.pop("b4")
        base = base or (b1, b4)
        rows[name] = {
            "s_per_img_batch1": round(b1, 3),
            "s_per_img_batch4": round(b4, 3),
            "speedup_batch1": round(base[0] / b1, 2),
            "speedup_batch4": round(base[1] / b4, 2),
            **measured,
        }
        print(name, rows[name], file=sys.stderr, flush=True)
    return rows


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"  # one line, for the table


def quality(
    model_dir: Path,
    home: Path,
    n: int,
    only: str | None = None,
    split: str = "test",
    calibration_images: int = 100,
) -> dict[str, Any]:
    """mAP@0.5 of each variant on the first n images of a split of a trained model's database;
    the int8 engines calibrated on train images (the same fixed-seed draw as
    `labeler models optimize`)."""
    from core.settings import Settings
    from db.models import Split
    from labeler.context import AppContext
    from labeler.jobs.inference import predict_all
    from labeler.jobs.optimize import calibration_draw
    from labeler.jobs.samples import labeled_images
    from ml_backend.evaluation.evaluator import DetectionEvaluator

    app = AppContext(Settings(_env_file=None, home=home, db_url=""))
    with app.sessions() as session:
        images = labeled_images(session, split=Split(split))[:n]
        train = [im.png_path for im in labeled_images(session, split=Split.TRAIN)]
    trained = FasterRCNNDetector.load(model_dir)
    size = trained.config.image_size
    calibration = list(calibration_draw(home, train, calibration_images, size))
    out: dict[str, Any] = {}
    for name, make in _selected(only, calibration).items():
        try:
            det = copy.deepcopy(trained)
            with make(det)():
                preds = predict_all(det, home, [im.png_path for im in images], batch_size=4)
        except Exception as exc:
            out[name] = {"error": _error(exc)}
            continue
        ev = DetectionEvaluator(det.label_space, score_threshold=app.settings.score_threshold)
        ev.process([im.ground_truth() for im in images], preds)
        d = ev.evaluate().detection
        out[name] = {"map50": d.map50, "lesion_map50": d.lesion_map50}
        print(name, out[name], file=sys.stderr, flush=True)
    return out


def accelerator_speed(
    config: DetectorConfig,
    reps: int,
    device: str = "cuda",
    batches: tuple[int, ...] = (1, 8, 32),
    train_batches: tuple[int, ...] = (2, 8),
) -> dict[str, Any]:
    """`--device cuda`: inference at each batch size, eager fp32 against AMP + channels_last
    (fp16 on CUDA; bf16 where the same code runs on a CPU, as the tests run it), and a training
    step at each training batch size with AMP."""
    cuda = device.startswith("cuda")
    amp_dtype = torch.float16 if cuda else torch.bfloat16
    rows: dict[str, Any] = {"device_name": torch.cuda.get_device_name() if cuda else "cpu"}

    def amp() -> AbstractContextManager[Any]:
        return torch.autocast(torch.device(device).type, dtype=amp_dtype)

    for name, ctx, layout in (
        ("eager fp32", nullcontext, False),
        ("AMP + channels_last", amp, True),
    ):
        det = FasterRCNNDetector(config, device=device)
        if layout:
            det.model.to(memory_format=torch.channels_last)
        rows[name] = {f"s_per_img_b{b}": round(_latency(det, ctx, b, reps)[0], 4) for b in batches}
        print(name, rows[name], file=sys.stderr, flush=True)
    for batch in train_batches:
        rows[f"train_step_s_b{batch}"] = round(_train_step(config, reps, batch, device), 3)
    return rows


def variants_json(
    speed_rows: dict[str, Any], quality_rows: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One entry per variant: its times at batch 1 and 4, its ratios to eager fp32 from the same
    run, its RSS, and its cost in points of lesion mAP@0.5 where a trained model was given."""
    base_map = _map50(quality_rows, BASELINE)
    out = []
    for name, row in speed_rows.items():
        here = _map50(quality_rows, name)
        drop = None if base_map is None or here is None else round((base_map - here) * 100, 2)
        failed = (quality_rows or {}).get(name, {}).get("error")
        out.append(
            {
                "name": name,
                "s_per_img_b1": row.get("s_per_img_batch1"),
                "s_per_img_b4": row.get("s_per_img_batch4"),
                "ratio_vs_eager": row.get("speedup_batch1"),
                "ratio_vs_eager_b4": row.get("speedup_batch4"),
                "peak_rss_mb": row.get("peak_rss_mb"),
                "rss_growth_mb": row.get("rss_growth_mb"),
                "timed_peak_rss_mb": row.get("timed_peak_rss_mb"),
                "setup_s": row.get("setup_s"),
                "warmup_s_b1": row.get("warmup_s_b1"),
                "warmup_s_b4": row.get("warmup_s_b4"),
                "lesion_map50": here,
                "map50_drop": drop,
                **({"error": row["error"]} if "error" in row else {}),
                **({"map50_error": failed} if failed else {}),
            }
        )
    return out


def _map50(rows: dict[str, Any] | None, name: str) -> float | None:
    value = (rows or {}).get(name, {}).get("lesion_map50")
    return None if value is None else float(value)


def table(variants: list[dict[str, Any]]) -> str:
    """The variants as a Markdown table (ratios: eager s/img over the variant's)."""
    lines = [
        "| variant | s/img b1 | s/img b4 | vs eager b1 | vs eager b4 | peak RSS MB (growth) "
        "| peak RSS MB while timed | lesion mAP@0.5 drop (points) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        if "error" in v:
            lines.append(f"| {v['name']} | error: {v['error']} | | | | | | |")
            continue
        cost = v.get("map50_error") or _or_dash(v.get("map50_drop"), "{:+.2f}")
        cells = [
            _or_dash(v.get("s_per_img_b1"), "{:.3f}"),
            _or_dash(v.get("s_per_img_b4"), "{:.3f}"),
            _or_dash(v.get("ratio_vs_eager"), "{:.2f}x"),
            _or_dash(v.get("ratio_vs_eager_b4"), "{:.2f}x"),
            f"{_or_dash(v.get('peak_rss_mb'), '{}')} ({_or_dash(v.get('rss_growth_mb'), '+{}')})",
            _or_dash(v.get("timed_peak_rss_mb"), "{}"),
            cost,
        ]
        lines.append(f"| {v['name']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _or_dash(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)


def cpu_report(config: DetectorConfig, args: argparse.Namespace, text: TextIO) -> dict[str, Any]:
    """The CPU part: FLOPs, a training step, every selected variant's speed and RSS, and with
    --model/--home its mAP cost; the table goes to `text`."""
    report: dict[str, Any] = {
        "gflops_per_img": round(_gflops(FasterRCNNDetector(config)), 1),
        "train_step_s_2_images": round(_train_step(config, 2, 2, "cpu"), 2),
    }
    earlier_peak = _peak_rss_mb()  # the training step's, before the per-variant resets
    speed_rows = speed(config, args.reps, args.only)
    quality_rows = None
    if args.model and args.home:
        quality_rows = quality(
            args.model, args.home, args.n_images, args.only, args.split, args.calibration_images
        )
        report["quality"] = quality_rows
    variants = variants_json(speed_rows, quality_rows)
    print(table(variants), file=text, flush=True)
    report |= {"variants": variants, "rss": RSS_NOTE}
    report["peak_rss_mb"] = _run_peak(earlier_peak, variants)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="r101-800")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a trained model folder, for the mAP cost")
    parser.add_argument("--home", type=Path, help="the LABELER_HOME that model was evaluated in")
    parser.add_argument("--n-images", type=int, default=120)
    parser.add_argument("--split", choices=("val", "test"), default="test", help="for the mAP")
    parser.add_argument("--calibration-images", type=int, default=100, help="train images")
    parser.add_argument("--only", help="comma-separated name parts, e.g. 'onnx,bf16'")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    flush_denormals()
    config = load_config(args.config)
    flags = cpu_flags()
    text = sys.stderr if args.json else sys.stdout
    print(flag_line(flags), file=text, flush=True)
    report: dict[str, Any] = {"config": args.config, "device": args.device, "cpu": flags}
    report["threads"] = torch.get_num_threads()
    if args.device == "cuda":
        report["cuda"] = accelerator_speed(config, args.reps)
        report["peak_rss_mb"] = round(_peak_rss_mb())  # the whole run, process-wide
    else:
        report |= cpu_report(config, args, text)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
