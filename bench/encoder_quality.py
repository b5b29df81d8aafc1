"""Lesion-encoder quality on BUS-BRA: patient-disjoint 5-fold CV on the official folds.

    PYTHONPATH=. .venv/bin/python bench/encoder_quality.py --data ../shared/data/busbra \\
        --methods baseline,lr,ir,lr_entropy --epochs 30 --folds 1-5 --device cuda \\
        --out bench/results/encoder_quality

For every method and held-out fold K: train on the other four folds (random init), then score
fold K: AUC, ACC, SEN, SPE, precision, F1 and MCR per image (threshold 0.5), and retrieval
mAP@10, P@1, P@10 by pathology with the training folds as the gallery, in the all-, same- and
cross-patient settings (ml_backend/encoder/evaluate.py). Tables give mean +- sd over folds.
The label-efficiency curve trains one method on a random fraction of the training lesions
(same number of optimisation steps: epochs / fraction) and reports AUC against lesions.

CPU budget (measured on 2 cores, fold 1, 1499 training images): `--crop-size 112
--views-per-lesion 2` takes about 24 s per epoch and 10 s to score a fold, so `--epochs 5`
gives the whole table plus the curve (30 runs) in about 1.1 h (fold 1 reached AUC 0.92 with
the baseline, 0.90 with LR). The GPU defaults (224 px, 8 x 8) take 459 s per epoch there, about
115 h for 30 epochs: they are for a GPU. The footer of every result extrapolates from the
runs it measured.

Results are written after every run to OUT/encoder_quality.json (and .md); --resume skips the
runs already there with the same settings, so a long benchmark can be split across several
shorter commands (keep --home to skip the import too). Needs no network and no packages beyond
the project's: the data is imported with run_import into a temporary LABELER_HOME.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.settings import Settings
from db.queries import images as image_queries
from labeler.context import AppContext
from labeler.importing.pipeline import run_import
from labeler.jobs.lesions import reference_lesions
from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.data import LesionCropDataset
from ml_backend.encoder.evaluate import evaluate_fold
from ml_backend.encoder.train import METHODS, EncoderTrainConfig, train_encoder
from ml_backend.runtime import flush_denormals
from ml_backend.training.hooks import EpochInfo, TrainHooks

RESULTS = "encoder_quality"
CLASSIFICATION = ("auc", "acc", "sen", "spe", "precision", "f1", "mcr")
RETRIEVAL = ("map_at_10", "precision_at_1", "precision_at_10")
SETTINGS = ("all", "same-patient", "cross-patient")


def parse_folds(text: str) -> list[int]:
    """'1-5' or '1,3,5'."""
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(f) for f in text.split(",")]


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/busbra"))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--folds", type=parse_folds, default=parse_folds("1-5"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("bench/results/encoder_quality"))
    p.add_argument("--home", type=Path, default=None, help="LABELER_HOME (default: temporary)")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--lesions-per-batch", type=int, default=8)
    p.add_argument("--views-per-lesion", type=int, default=8)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--birads-head", action="store_true")
    p.add_argument("--balanced-classes", action="store_true", help="inverse-frequency CE weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve-method", default="lr", help="'none' skips the curve")
    p.add_argument("--curve-fractions", default="0.25,0.5,1.0")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    p.add_argument("--resume", action="store_true")
    return p.parse_args()


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What makes two runs comparable (resume refuses a file with other settings)."""
    keys = ["epochs", "backbone", "crop_size", "lesions_per_batch", "views_per_lesion"]
    keys += ["optimizer", "lr", "birads_head", "balanced_classes", "seed"]
    keys += ["curve_method", "curve_fractions"]
    return {k: getattr(args, k) for k in keys}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class EpochLog(TrainHooks):
    """One line per epoch on stderr, so a long run can be watched."""

    def __init__(self, name: str) -> None:
        self.name, self.started = name, time.perf_counter()

    def after_epoch(self, info: EpochInfo) -> None:
        seconds = time.perf_counter() - self.started
        log(f"  {self.name} epoch {info.epoch}: train loss {info.loss:.4f} ({seconds:.0f} s)")


def load_data(args: argparse.Namespace) -> tuple[LesionCropDataset, dict[str, float]]:
    """Import BUS-BRA (once per home) and preload every lesion crop."""
    home = args.home or Path(tempfile.mkdtemp(prefix="encoder-quality-"))
    data_root = args.data.resolve().parent
    settings = Settings(_env_file=None, home=home, data_root=data_root, db_url="")
    app = AppContext(settings)
    app.ensure_schema()
    started = time.perf_counter()
    with app.sessions() as session:
        present = image_queries.image_counts(session, dataset="busbra").total
    if not present:
        log(f"importing {args.data} into {home}")
        run_import(args.data.resolve(), dataset="busbra", settings=settings, sessions=app.sessions)
    imported = time.perf_counter()
    with app.sessions() as session:
        samples = reference_lesions(session, dataset="busbra")
    log(f"preloading {len(samples)} crops at {args.crop_size} px")
    data = LesionCropDataset.load(
        samples, home, size=args.crop_size, margin=0.1, augment=False, workers=8
    )
    loaded = time.perf_counter()
    return data, {"import_s": imported - started, "preload_s": loaded - imported}


def model_config(args: argparse.Namespace) -> EncoderConfig:
    return EncoderConfig.model_validate(
        {"backbone": args.backbone, "crop_size": args.crop_size, "birads_head": args.birads_head}
    )


def train_config(args: argparse.Namespace, method: str, epochs: int) -> EncoderTrainConfig:
    return EncoderTrainConfig.model_validate(
        {
            "method": method,
            "epochs": epochs,
            "lesions_per_batch": args.lesions_per_batch,
            "views_per_lesion": args.views_per_lesion,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "balanced_classes": args.balanced_classes,
            "seed": args.seed,
        }
    )


def lesion_fraction(
    data: LesionCropDataset, indices: list[int], fraction: float, seed: int
) -> list[int]:
    """The samples of a random `fraction` of the lesions among `indices` (all their views)."""
    lesions = sorted({data.samples[i].lesion_key for i in indices})
    rng = np.random.default_rng(seed)
    keep = set(rng.permutation(lesions)[: max(2, round(fraction * len(lesions)))].tolist())
    return [i for i in indices if data.samples[i].lesion_key in keep]


def run_one(
    args: argparse.Namespace,
    data: LesionCropDataset,
    fold: int,
    method: str,
    fraction: float = 1.0,
) -> dict[str, Any]:
    """Train on the other folds (a fraction of their lesions), score `fold`."""
    test = [i for i, s in enumerate(data.samples) if s.fold == fold]
    train = [i for i, s in enumerate(data.samples) if s.fold != fold]
    if fraction < 1.0:
        train = lesion_fraction(data, train, fraction, args.seed + fold)
    epochs = max(1, round(args.epochs / fraction))  # same number of steps as the full set
    name = f"{method} fold {fold}" + (f" {fraction:.0%}" if fraction < 1 else "")
    result = train_encoder(
        data.subset(train, augment=True),
        model_config(args),
        train_config(args, method, epochs),
        device=args.device,
        hooks=EpochLog(name),
    )
    started = time.perf_counter()
    report = evaluate_fold(
        result.model,
        data.subset(test, augment=False),
        data.subset(train, augment=False),
        batch_size=128,
    )
    return report.metrics().model_dump(mode="json") | {
        "fold": fold,
        "method": method,
        "fraction": fraction,
        "epochs": epochs,
        "n_train_images": len(train),
        "n_train_lesions": len({data.samples[i].lesion_key for i in train}),
        "losses": result.losses,
        "train_s": round(result.seconds, 1),
        "epoch_s": round(result.seconds / epochs, 1),
        "eval_s": round(time.perf_counter() - started, 1),
    }


def mean_sd(values: list[Any]) -> dict[str, float] | None:
    """Mean and sample sd over folds (sd 0 for one fold); None values are left out."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    sd = float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0
    return {"mean": float(np.mean(xs)), "sd": sd, "n": len(xs)}


def run_key(method: str, fold: int, fraction: float) -> str:
    return f"{method}/fold{fold}/{fraction:g}"


def method_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {m: mean_sd([r[m] for r in rows]) for m in CLASSIFICATION}
    entry["retrieval"] = {
        s: {m: mean_sd([r["retrieval"][s][m] for r in rows]) for m in RETRIEVAL} for s in SETTINGS
    }
    entry["other_view_p1"] = mean_sd([r["other_view"]["precision_at_1"] for r in rows])
    entry["folds"] = [r["fold"] for r in rows]
    entry["epoch_s"] = mean_sd([r["epoch_s"] for r in rows])
    return entry


def rows_for(
    runs: dict[str, Any], method: str, folds: list[int], fraction: float
) -> list[dict[str, Any]]:
    keys = [run_key(method, f, fraction) for f in folds]
    return [runs[k] for k in keys if k in runs]


def summarise(runs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Mean +- sd over folds per method, and the curve's points."""
    table = {}
    for method in args.methods.split(","):
        if rows := rows_for(runs, method, args.folds, 1.0):
            table[method] = method_summary(rows)
    curve = []
    for fraction in curve_fractions(args):
        if rows := rows_for(runs, args.curve_method, args.folds, fraction):
            point = {"fraction": fraction, "lesions": mean_sd([r["n_train_lesions"] for r in rows])}
            curve.append(point | {"auc": mean_sd([r["auc"] for r in rows])})
    return {"methods": table, "curve": curve}


def curve_fractions(args: argparse.Namespace) -> list[float]:
    if args.curve_method == "none":
        return []
    return sorted(float(f) for f in args.curve_fractions.split(","))


def plan(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    """Every (method, fold, fraction) to run: the table first, then the curve."""
    runs = [(m, f, 1.0) for f in args.folds for m in args.methods.split(",")]
    runs += [(args.curve_method, f, x) for x in curve_fractions(args) for f in args.folds]
    return list(dict.fromkeys(runs))


def cell(stat: dict[str, float] | None) -> str:
    return "-" if stat is None else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def markdown(summary: dict[str, Any], footer: list[str]) -> str:
    names = ("AUC", "ACC", "SEN", "SPE", "precision", "F1", "MCR")
    lines = ["| method | folds | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for method, e in summary["methods"].items():
        cells = " | ".join(cell(e[m]) for m in CLASSIFICATION)
        lines.append(f"| {method} | {len(e['folds'])} | {cells} |")
    lines += ["", "| method | setting | mAP@10 | P@1 | P@10 |", "|---|---|---|---|---|"]
    for method, e in summary["methods"].items():
        for s in SETTINGS:
            cells = " | ".join(cell(e["retrieval"][s][m]) for m in RETRIEVAL)
            lines.append(f"| {method} | {s} | {cells} |")
        lines.append(
            f"| {method} | other view ranked first (lesion id) | | {cell(e['other_view_p1'])} | |"
        )
    if summary["curve"]:
        lines += ["", "| training lesions (fraction) | AUC |", "|---|---|"]
        for p in summary["curve"]:
            lesions = p["lesions"]["mean"] if p["lesions"] else 0
            lines.append(f"| {lesions:.0f} ({p['fraction']:.0%}) | {cell(p['auc'])} |")
    return "\n".join([*lines, "", *footer]) + "\n"


def load_state(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    fresh: dict[str, Any] = {"settings": settings_of(args), "runs": {}}
    if not (args.resume and path.is_file()):
        return fresh
    state: dict[str, Any] = json.loads(path.read_text())
    if state.get("settings") != fresh["settings"]:
        raise SystemExit(f"{path} holds runs with other settings: drop --resume or pick --out")
    return state


def timing_lines(state: dict[str, Any], args: argparse.Namespace, wall_s: float) -> list[str]:
    """Measured times, and what the full benchmark would take at the same per-epoch speed."""
    runs = list(state["runs"].values())
    epoch_s = float(np.mean([r["epoch_s"] for r in runs])) if runs else math.nan
    eval_s = float(np.mean([r["eval_s"] for r in runs])) if runs else math.nan
    n_full = len(METHODS) * 5 + 2 * 5  # the table, and the curve's 25% and 50% points
    full_h = n_full * (args.epochs * epoch_s + eval_s) / 3600
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    threads = torch.get_num_threads()
    return [
        f"Settings: {json.dumps(settings_of(args))}; device {device} ({threads} CPU threads), "
        f"torch {torch.__version__}.",
        f"Measured: {epoch_s:.1f} s per training epoch of one fold (mean of {len(runs)} runs), "
        f"{eval_s:.1f} s per fold evaluation; this invocation took {wall_s / 60:.1f} min.",
        f"Extrapolated: 4 methods x 5 folds + 2 curve points x 5 folds at {args.epochs} epochs "
        f"= {n_full} runs, about {full_h:.1f} h on this device.",
    ]


def write(out: Path, state: dict[str, Any], args: argparse.Namespace, wall_s: float) -> str:
    """JSON with every run and the summary, and the markdown tables; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(state["runs"], args)
    footer = timing_lines(state, args, wall_s)
    state = state | {"summary": summary, "timing": footer}
    (out / f"{RESULTS}.json").write_text(json.dumps(state, indent=2))
    text = markdown(summary, footer)
    (out / f"{RESULTS}.md").write_text(text)
    return text


def main() -> None:
    args = arguments()
    flush_denormals()
    started = time.perf_counter()
    state = load_state(args.out / f"{RESULTS}.json", args)
    data, prep = load_data(args)
    log(f"import {prep['import_s']:.0f} s, crops {prep['preload_s']:.0f} s")
    todo = [run for run in plan(args) if run_key(*run) not in state["runs"]]
    for method, fold, fraction in todo[: args.max_runs]:
        log(f"{method} fold {fold} ({fraction:.0%} of the training lesions)")
        state["runs"][run_key(method, fold, fraction)] = run_one(args, data, fold, method, fraction)
        write(args.out, state, args, time.perf_counter() - started)
    print(write(args.out, state, args, time.perf_counter() - started))
    print(f"total wall time {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
