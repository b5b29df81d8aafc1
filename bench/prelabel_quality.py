"""Pre-label quality on BUS-BRA's official folds: the default recipe end to end, then an
ablation of its ingredients, every figure from the one pre-label pipeline on the test fold.

    .venv/bin/python -m bench.prelabel_quality --data ../shared/data/busbra --budget-min 90

Folds 3-5 train (1114 images), fold 2 validates (385: the calibrators and the operating point
are fitted there), fold 1 is the patient-disjoint test set (376), as in bench/detector_quality.py.
The recipe (`Recipe` below; `--gpu` for the GPU one) trains

1. the detector (`small`, five-way, random init), epochs fitted to its share of the budget from
   timed steps;
2. the lesion encoder with the BI-RADS regression head (Shi et al.), calibrated on the validation
   lesions; it grades the detector's boxes;

then scores the test fold with `labeler.jobs.evaluate.evaluate_version`: boxes from pixels
(detector), P(malignant) and BI-RADS from the grader, calibrated, at the threshold chosen on the
validation split for LABELER_TARGET_SENSITIVITY. The radiologists' own BI-RADS on the same
images is the baseline (ReaderBaseline).

`--ablation NAME,...` then changes one ingredient at a time (ABLATIONS) and scores it the same
way, `--seeds N` times each; every result is written to OUT/prelabel_quality.json as it comes,
and `--home` keeps the imported data and the models for a later `--ablation` run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.detector_quality import seconds_per_image
from core.results import EvaluationMetrics
from core.settings import Settings
from db.models import Split
from db.queries import images as image_queries
from labeler.context import AppContext
from labeler.importing.pipeline import run_import
from labeler.jobs.encoder import train_encoder_version
from labeler.jobs.evaluate import evaluate_version
from labeler.jobs.pretrain import pretrain_site
from labeler.jobs.train import make_config, train_detector
from labeler.progress import TrainProgress
from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.train import EncoderTrainConfig, Method
from ml_backend.registry import ModelRegistry
from ml_backend.runtime import flush_denormals


@dataclass(frozen=True)
class Recipe:
    """One way to make the pre-labels; the defaults are the 2-core CPU recipe."""

    detector: str = "small"
    detector_share: float = 0.6  # of the budget, for detector training
    detector_epochs: int | None = None  # None: fitted to detector_share
    augment: str = "standard"  # detector TrainConfig.augment: none | standard | paper
    encoder: bool = True  # False: the detector grades its own boxes
    encoder_crop: int = 224
    encoder_epochs: int = 8
    encoder_method: Method = "baseline"
    flip_tta: bool = False
    pretrain_epochs: int = 0  # SimCLR on the site's images (labeler encoder pretrain); 0: none
    pretrain_crop: int = 112
    seed: int = 0


GPU_RECIPE = Recipe(detector="r101-800", detector_epochs=24, encoder_epochs=30)
ABLATIONS: dict[str, Callable[[Recipe], Recipe]] = {
    "no-augmentation": lambda r: replace(r, augment="none"),
    "paper-flips": lambda r: replace(r, augment="paper"),  # + up-down flips
    "detector-grades": lambda r: replace(r, encoder=False),
    "encoder-112px": lambda r: replace(r, encoder_crop=112),
    "encoder-half-epochs": lambda r: replace(r, encoder_epochs=max(1, r.encoder_epochs // 2)),
    "encoder-lr-entropy": lambda r: replace(r, encoder_method="lr_entropy"),
    "flip-tta": lambda r: replace(r, flip_tta=True),
    "pretrained": lambda r: replace(r, pretrain_epochs=20),
}
PRETRAIN_FIELDS = ("pretrain_epochs", "pretrain_crop", "seed")
DETECTOR_FIELDS = ("detector", "detector_epochs", "augment", *PRETRAIN_FIELDS)
ENCODER_FIELDS = ("encoder", "encoder_crop", "encoder_epochs", "encoder_method", *PRETRAIN_FIELDS)


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """The imported data and the models trained so far, keyed by the recipe fields they use."""

    app: AppContext
    out: Path
    started: float
    budget_s: float
    detectors: dict[str, str]
    encoders: dict[str, str]
    trunks: dict[str, str]  # pre-trained backbone.pt files
    results: list[dict[str, Any]]

    def trunk_for(self, recipe: Recipe) -> str | None:
        if not recipe.pretrain_epochs:
            return None
        key = _key(recipe, PRETRAIN_FIELDS)
        if key not in self.trunks:
            log(f"pre-training {key} on the site's images")
            with TrainProgress() as hooks:
                done = pretrain_site(
                    self.app,
                    epochs=recipe.pretrain_epochs,
                    crop_size=recipe.pretrain_crop,
                    out=self.app.settings.home / "pretrain" / f"bench-{len(self.trunks)}",
                    resume=True,  # a cut-off run picks up at its last epoch
                    hooks=hooks,
                )
            self.trunks[key] = done.backbone_weights
            self.save()
        return self.trunks[key]

    def detector_for(self, recipe: Recipe) -> str:
        key = _key(recipe, DETECTOR_FIELDS)
        if key not in self.detectors:
            epochs = recipe.detector_epochs or self._fitted_epochs(recipe)
            config = make_config(recipe.detector, exclude_4=False, epochs=epochs)
            train = config.train.model_copy(update={"augment": recipe.augment, "seed": recipe.seed})
            trunk = self.trunk_for(recipe)
            config = config.model_copy(update={"train": train, "backbone_weights": trunk})
            log(f"detector {key}: {epochs} epochs")
            with TrainProgress() as hooks:  # a line at most every 30 s, and at each epoch's end
                outcome = train_detector(
                    self.app, config=config, exclude_4=False, resume=True, hooks=hooks
                )
            self.detectors[key] = outcome.version_id
            self.save()  # a run cut off later still finds this model
        return self.detectors[key]

    def encoder_for(self, recipe: Recipe) -> str | None:
        if not recipe.encoder:
            return None
        key = _key(recipe, ENCODER_FIELDS)
        if key not in self.encoders:
            log(f"encoder {key}")
            model = EncoderConfig(
                crop_size=recipe.encoder_crop,
                birads_head=True,
                backbone_weights=self.trunk_for(recipe),
            )
            train = EncoderTrainConfig(
                method=recipe.encoder_method,
                epochs=recipe.encoder_epochs,
                views_per_lesion=2,
                seed=recipe.seed,
            )
            with TrainProgress() as hooks:
                outcome = train_encoder_version(self.app, model, train, log=log, hooks=hooks)
            self.encoders[key] = outcome.version_id
            self.save()
        return self.encoders[key]

    def _fitted_epochs(self, recipe: Recipe) -> int:
        config = make_config(recipe.detector, exclude_4=False, epochs=None)
        train_s, _ = seconds_per_image(self.app, config)
        with self.app.sessions() as session:
            n_train = image_queries.image_counts(session).by_split.get("train", 0)
        share = self.budget_s * recipe.detector_share
        return max(1, math.floor(share / (n_train * train_s * 1.05)))

    def score(self, name: str, recipe: Recipe) -> dict[str, Any]:
        """Train what `recipe` needs (once per recipe fields), score the test fold, record it;
        a (name, recipe) already in the results of a kept --home is not run again."""
        done = [r for r in self.results if r["name"] == name and r["recipe"] == asdict(recipe)]
        if done:
            return done[0]
        started = time.perf_counter()
        detector = self.detector_for(recipe)
        encoder = self.encoder_for(recipe)
        settings = self.app.settings.model_copy(
            update={"grader": "auto" if encoder else "detector", "grader_flip_tta": recipe.flip_tta}
        )
        if encoder is not None:
            registry = ModelRegistry.for_settings(settings, self.app.sessions)
            registry.promote(encoder, actor="bench", reason=name)
        result = evaluate_version(AppContext(settings), version_id=detector, split=Split.TEST)
        row = {
            "name": name,
            "recipe": asdict(recipe),
            "detector": detector,
            "encoder": encoder,
            "minutes": round((time.perf_counter() - started) / 60, 1),
            **summary(result.metrics),
            "metrics": result.metrics.model_dump(mode="json"),
        }
        self.results.append(row)
        self.save()
        log(f"{name}: {json.dumps({k: row[k] for k in SUMMARY_KEYS})}")
        return row

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        body = {
            "home": str(self.app.settings.home),
            "minutes": round((time.perf_counter() - self.started) / 60, 1),
            "detectors": self.detectors,
            "encoders": self.encoders,
            "trunks": self.trunks,
            "results": self.results,
        }
        path = self.out / "prelabel_quality.json"
        path.with_suffix(".tmp").write_text(json.dumps(body, indent=1))
        path.with_suffix(".tmp").replace(path)


def _key(recipe: Recipe, fields: tuple[str, ...]) -> str:
    return json.dumps({f: getattr(recipe, f) for f in fields}, sort_keys=True)


def _upgraded(trained: dict[str, str], fields: tuple[str, ...]) -> dict[str, str]:
    """Keys written before a Recipe field existed, with that field's default: a kept --home
    still finds its models after the recipe grows."""
    default = asdict(Recipe())
    return {
        json.dumps({f: json.loads(key).get(f, default[f]) for f in fields}, sort_keys=True): v
        for key, v in trained.items()
    }


SUMMARY_KEYS = ("lesion_map50", "auc", "sen", "spe", "threshold", "reader_auc")


def summary(m: EvaluationMetrics) -> dict[str, Any]:
    """The figures the issue's targets name, from one stored evaluation."""
    op = m.screening.operating_point
    base = m.reader_baseline
    return {
        "lesion_map50": _r(m.detection.lesion_map50),
        "auc": _r(m.screening.pathology_auc),
        "sen": _r(op.rates.sen.value if op and op.rates.sen else None),
        "spe": _r(op.rates.spe.value if op and op.rates.spe else None),
        "threshold": _r(op.threshold if op else None),
        "reader_auc": _r(base.auc if base else None),
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report(bench: Bench) -> str:
    """The test-fold figures of the default recipe, then the ablation table."""
    rows = bench.results
    default = next(r for r in rows if r["name"] == "default")
    m = EvaluationMetrics.model_validate(default["metrics"])
    lines = ["## default recipe, test fold", *_default_lines(m), "", "## ablation"]
    lines += ["| variant | seeds | lesion mAP@0.5 | AUC | SEN | SPE |", "|---|---|---|---|---|---|"]
    names = list(dict.fromkeys(r["name"] for r in rows))
    for name in names:
        group = [r for r in rows if r["name"] == name]
        cells = [_mean_sd([r[k] for r in group]) for k in ("lesion_map50", "auc", "sen", "spe")]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _default_lines(m: EvaluationMetrics) -> list[str]:
    s, base, op = m.screening, m.reader_baseline, m.screening.operating_point
    lines = [
        f"images {m.n_images}; lesion mAP@0.5 {_f(m.detection.lesion_map50)}; "
        f"malignancy AUC from pixels (vs biopsy) {_f(s.pathology_auc)}",
        f"operating point (threshold {_f(op.threshold) if op else '-'} chosen on validation for "
        f"SEN {op.target_sensitivity if op else '-'}): SEN {_rate(op.rates.sen if op else None)} "
        f"SPE {_rate(op.rates.spe if op else None)}",
        f"paper's fixed rule (BI-RADS >= 4 malignant): SEN {_rate(s.rates.sen)} "
        f"SPE {_rate(s.rates.spe)}",
    ]
    if base is not None:
        lines.append(
            f"radiologists' BI-RADS on the same images: AUC {_f(base.auc)}; "
            f">= 4: SEN {_rate(base.at_4.sen)} SPE {_rate(base.at_4.spe)}; "
            f">= 4B: SEN {_rate(base.at_4b.sen)} SPE {_rate(base.at_4b.spe)} "
            f"({base.plain_4_left_out} plain-4 images left out: they cannot be placed)"
        )
    matrix = m.birads.matrix
    lines.append(
        "BI-RADS confusion matrix (rows reference, columns predicted): " + " ".join(matrix.labels)
    )
    lines += [f"  {label}: {row}" for label, row in zip(matrix.labels, matrix.counts, strict=True)]
    return lines


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _rate(estimate: Any) -> str:
    return "-" if estimate is None else f"{estimate.value:.3f}"


def _mean_sd(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    if len(known) == 1:
        return f"{known[0]:.3f}"
    return f"{statistics.mean(known):.3f} ± {statistics.stdev(known):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/busbra"))
    parser.add_argument("--budget-min", type=float, default=90.0)
    parser.add_argument("--home", type=Path, default=None, help="keep the run here (default: temp)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/prelabel_quality"))
    parser.add_argument("--ablation", default="", help=f"comma list of {', '.join(ABLATIONS)}")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="the GPU recipe on settings.device")
    parser.add_argument(
        "--detector-epochs", type=int, default=None, help="fixed, instead of fitted to the budget"
    )
    args = parser.parse_args()
    unknown = [a for a in args.ablation.split(",") if a and a not in ABLATIONS]
    if unknown:
        parser.error(f"unknown ablation {unknown}: choose from {', '.join(ABLATIONS)}")
    flush_denormals()
    bench = _open(args)
    recipe = GPU_RECIPE if args.gpu else Recipe()
    if args.detector_epochs is not None:
        recipe = replace(recipe, detector_epochs=args.detector_epochs)
    for seed in range(args.seeds):
        bench.score("default", replace(recipe, seed=seed))
        for name in filter(None, args.ablation.split(",")):
            bench.score(name, ABLATIONS[name](replace(recipe, seed=seed)))
    print(report(bench))


def _open(args: argparse.Namespace) -> Bench:
    started = time.perf_counter()
    home = args.home or Path(tempfile.mkdtemp(prefix="prelabel-quality-"))
    settings = Settings(_env_file=None, home=home, data_root=args.data.resolve().parent, db_url="")
    app = AppContext(settings)
    app.ensure_schema()
    previous = args.out / "prelabel_quality.json"
    state = json.loads(previous.read_text()) if args.home and previous.exists() else {}
    if not state:
        log(f"importing {args.data} into {home}")
        run_import(args.data, dataset="busbra", settings=settings, sessions=app.sessions)
    return Bench(
        app=app,
        out=args.out,
        started=started,
        budget_s=args.budget_min * 60,
        detectors=_upgraded(state.get("detectors", {}), DETECTOR_FIELDS),
        encoders=_upgraded(state.get("encoders", {}), ENCODER_FIELDS),
        trunks=state.get("trunks", {}),
        results=[{**r, "recipe": asdict(Recipe()) | r["recipe"]} for r in state.get("results", [])],
    )


if __name__ == "__main__":
    main()
