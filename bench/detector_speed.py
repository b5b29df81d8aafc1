"""Detector speed: R101-FPN at 800x800, eager fp32 torchvision as the baseline, against cheaper
variants, all measured in this run. With --model, each variant's mAP cost is measured on a
trained model (the small one from bench/detector_quality.py).

    .venv/bin/python bench/detector_speed.py --model HOME/models/VERSION --home HOME
    .venv/bin/python bench/detector_speed.py --device cuda   # a GPU: AMP + channels_last

CPU variants: fewer RPN proposals (300 instead of 1000), BatchNorm folded + channels_last, both,
torch.compile of the backbone, bf16 autocast, int8 dynamic quantization of the Linear layers,
ONNX Runtime. CUDA variants: eager fp32 and fp16 AMP + channels_last, at batch 1, 8 and 32, and a
training step at batch 2 and 8. Weights are random for the speed part: time does not depend on
their values (proposal counts are capped). Latency is the median of --reps runs after one
warm-up. The first line names the CPU's flags (avx2, avx512_vnni, avx512_bf16, amx) read at run
time; `--json` prints one object whose `variants` list holds, per variant, `name`,
`s_per_img_b1`, `ratio_vs_eager` and `map50_drop` (points of mAP@0.5 lost against eager, null
where not measured).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ml_backend.detector.config import DetectorConfig, load_config
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.optimize import limit_proposals, optimize_for_inference
from ml_backend.runtime import flush_denormals

Context = Callable[[], AbstractContextManager[Any]]
Variant = Callable[[FasterRCNNDetector], Context]  # changes a detector in place


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
    "eager fp32 (baseline)": _eager,
    "300 proposals": _fewer_proposals,
    "BN folded + channels_last": _folded,
    "BN folded + channels_last + 300 proposals": _folded_fewer,
    "torch.compile backbone (+ BN folded)": _compiled,
    "bf16 autocast": _bf16,
    "BN folded + channels_last + bf16": _folded_bf16,
    "int8 dynamic (Linear)": _int8,
    "ONNX Runtime fp32 (opset 17)": _onnx,
}


def _latency(det: FasterRCNNDetector, ctx: Context, batch: int, reps: int) -> float:
    images = [
        torch.rand(det.config.image_size, det.config.image_size, 3).mul(255).byte().numpy()
        for _ in range(batch)
    ]
    with ctx():
        det.predict(images)  # warm-up (and compile)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            det.predict(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _selected(only: str | None) -> dict[str, Variant]:
    """The baseline always runs, so every ratio has its denominator from the same run."""
    if not only:
        return VARIANTS
    keys = [k.strip().lower() for k in only.split(",")]
    return {
        n: v
        for i, (n, v) in enumerate(VARIANTS.items())
        if i == 0 or any(k in n.lower() for k in keys)
    }


def speed(config: DetectorConfig, reps: int, only: str | None = None) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    base: tuple[float, float] | None = None
    for name, make in _selected(only).items():
        try:
            torch.manual_seed(0)
            det = FasterRCNNDetector(config)
            ctx = make(det)
            b1, b4 = _latency(det, ctx, 1, reps), _latency(det, ctx, 4, max(1, reps // 2))
        except Exception as exc:  # a variant this torch cannot run is reported, not fatal
            rows[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        base = base or (b1, b4)
        rows[name] = {
            "s_per_img_batch1": round(b1, 3),
            "s_per_img_batch4": round(b4, 3),
            "speedup_batch1": round(base[0] / b1, 2),
            "speedup_batch4": round(base[1] / b4, 2),
            "peak_rss_mb_so_far": round(_peak_rss_mb()),
        }
        print(name, rows[name], file=sys.stderr, flush=True)
    return rows


def quality(model_dir: Path, home: Path, n: int, only: str | None = None) -> dict[str, Any]:
    """mAP@0.5 of each variant on the first n test images of a trained model's database."""
    from core.settings import Settings
    from db.models import Split
    from labeler.context import AppContext
    from labeler.jobs.inference import predict_all
    from labeler.jobs.samples import labeled_images
    from ml_backend.evaluation.evaluator import DetectionEvaluator

    app = AppContext(Settings(_env_file=None, home=home, db_url=""))
    with app.sessions() as session:
        images = labeled_images(session, split=Split.TEST)[:n]
    trained = FasterRCNNDetector.load(model_dir)
    out: dict[str, Any] = {}
    for name, make in _selected(only).items():
        try:
            det = copy.deepcopy(trained)
            with make(det)():
                preds = predict_all(det, home, [im.png_path for im in images], batch_size=4)
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        ev = DetectionEvaluator(det.label_space, score_threshold=app.settings.score_threshold)
        ev.process([im.ground_truth() for im in images], preds)
        d = ev.evaluate().detection
        out[name] = {"map50": d.map50, "lesion_map50": d.lesion_map50}
        print(name, out[name], file=sys.stderr, flush=True)
    return out


CPU_FLAGS = {
    "avx2": "avx2",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx": "amx_tile",
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The instruction sets the int8 and bf16 paths depend on, read from this machine now (never
    assumed: the developers' CPU has AVX512-BF16, hospital servers often AVX2 only)."""
    try:
        line = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
        present = set(line.split(":", 1)[1].split())
    except (OSError, StopIteration):
        present = set()
    flags: dict[str, Any] = {name: flag in present for name, flag in CPU_FLAGS.items()}
    flags["torch_capability"] = torch.backends.cpu.get_cpu_capability()
    return flags


def flag_line(flags: dict[str, Any]) -> str:
    shown = ", ".join(f"{k} {'yes' if flags[k] else 'no'}" for k in CPU_FLAGS)
    return f"cpu flags: {shown} (torch kernels: {flags['torch_capability']})"


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
        rows[name] = {f"s_per_img_b{b}": round(_latency(det, ctx, b, reps), 4) for b in batches}
        print(name, rows[name], file=sys.stderr, flush=True)
    for batch in train_batches:
        rows[f"train_step_s_b{batch}"] = round(_train_step(config, reps, batch, device), 3)
    return rows


def variants_json(
    speed_rows: dict[str, Any], quality_rows: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One entry per variant: its batch-1 time, its ratio to eager fp32 from the same run, and
    its mAP@0.5 cost in points where a trained model was given."""
    base_map = _map50(quality_rows, next(iter(VARIANTS))) if quality_rows else None
    out = []
    for name, row in speed_rows.items():
        here = _map50(quality_rows, name) if quality_rows else None
        drop = None if base_map is None or here is None else round((base_map - here) * 100, 2)
        out.append(
            {
                "name": name,
                "s_per_img_b1": row.get("s_per_img_batch1"),
                "s_per_img_b4": row.get("s_per_img_batch4"),
                "ratio_vs_eager": row.get("speedup_batch1"),
                "peak_rss_mb_so_far": row.get("peak_rss_mb_so_far"),
                "map50_drop": drop,
                **({"error": row["error"]} if "error" in row else {}),
            }
        )
    return out


def _map50(rows: dict[str, Any] | None, name: str) -> float | None:
    value = (rows or {}).get(name, {}).get("map50")
    return None if value is None else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="r101-800")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a trained model folder, for the mAP cost")
    parser.add_argument("--home", type=Path, help="the LABELER_HOME that model was evaluated in")
    parser.add_argument("--n-images", type=int, default=120)
    parser.add_argument("--only", help="comma-separated name parts, e.g. 'onnx,bf16'")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    flush_denormals()
    config = load_config(args.config)
    flags = cpu_flags()
    print(flag_line(flags), file=sys.stderr if args.json else sys.stdout, flush=True)
    report: dict[str, Any] = {"config": args.config, "device": args.device, "cpu": flags}
    report["threads"] = torch.get_num_threads()
    if args.device == "cuda":
        report["cuda"] = accelerator_speed(config, args.reps)
    else:
        report["gflops_per_img"] = round(_gflops(FasterRCNNDetector(config)), 1)
        report["train_step_s_2_images"] = round(_train_step(config, 2, 2, "cpu"), 2)
        speed_rows = speed(config, args.reps, args.only)
        quality_rows = None
        if args.model and args.home:
            quality_rows = quality(args.model, args.home, args.n_images, args.only)
        report["variants"] = variants_json(speed_rows, quality_rows)
    report["peak_rss_mb"] = round(_peak_rss_mb())
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
