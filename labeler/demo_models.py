"""What the demo shows before the services start: every model and every page's data.

On the bundled sample, in order: the detector, the BI-RADS-4-excluded splitter (so plain-4
pre-labels become 4A/4B), a small lesion encoder and its similar-lesion index (it grades the
pre-labels), the pre-labels themselves, the evaluation of the detector and the splitter on the
test split (the dashboard's Tables I-III, confusion matrices and ROC), and a one-round
simulation (a seed model, then one round of review and fine-tuning: the Models page's
active-learning curve). Every step says how long it usually takes, ends with one line, and says
"reused" when a previous run already left its result.

The models are the `tiny` preset and a 64-pixel encoder: a demo shows the loop in minutes on 2
CPU cores, not the models' quality (bench/prelabel_quality.py measures that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from db.models import Split
from db.queries import evaluations as evaluation_queries
from db.queries import simulations as simulation_queries
from labeler.context import AppContext
from labeler.jobs.evaluate import ALL
from labeler.progress import ProgressBar, TrainProgress
from labeler.sample import importable
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND, ENCODER_KIND, NO4_KIND

if TYPE_CHECKING:
    from labeler.jobs.train import TrainingResult

PRESET = "tiny"
ENCODER_CROP, ENCODER_EPOCHS = 64, 8
SIMULATION_SAMPLE = "busbra_mini"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One step's outcome: its one-line summary, and whether it reused an earlier run's work."""

    summary: str
    reused: bool = False


@dataclass
class DemoModels:
    detector: str = ""
    splitter: str = ""
    encoder: str = ""
    trained: bool = False  # the detector was trained by this run
    predicted: int = 0


class Steps:
    """Numbered steps, each announced with its usual duration (measured on 2 quiet cores) and
    closed with its summary and its own duration."""

    def __init__(self, total: int, say: Say) -> None:
        self.total, self.say, self.done = total, say, 0

    def run(self, name: str, usual_s: int, work: Callable[[], Step]) -> Step:
        self.done += 1
        self.say(f"[{self.done}/{self.total}] {name} (usually about {usual_s} s, less if reused)")
        started = time.perf_counter()
        step = work()
        took = time.perf_counter() - started
        self.say(
            f"[{self.done}/{self.total}] {'reused: ' if step.reused else ''}{step.summary}"
            f" ({took:.0f} s)"
        )
        return step


STEPS = 7  # prepare's six, and the readers' reviews once Label Studio is up (demo_reviews)


def prepare(app: AppContext, *, epochs: int, steps: Steps) -> DemoModels:
    models = DemoModels()
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    steps.run("detector", 15, lambda: _detector(app, registry, models, epochs))
    steps.run("BI-RADS-4-excluded splitter", 10, lambda: _splitter(app, registry, models, epochs))
    steps.run("lesion encoder and similar-lesion index", 8, lambda: _encoder(app, models))
    steps.run("pre-labels", 12, lambda: _predict(app, models))
    steps.run("evaluation on the test split", 5, lambda: _evaluate(app, models))
    steps.run("one-round active-learning simulation", 25, lambda: _simulate(app))
    return models


def _detector(app: AppContext, registry: ModelRegistry, models: DemoModels, epochs: int) -> Step:
    active = registry.active(DETECTOR_KIND)
    if active is not None:
        models.detector = active.id
        return Step(f"detector {active.id}", reused=True)
    out = _train(app, exclude_4=False, epochs=epochs)
    models.detector, models.trained = out.version_id, True
    return Step(f"detector {out.version_id} trained on {out.n_train_images} images")


def _splitter(app: AppContext, registry: ModelRegistry, models: DemoModels, epochs: int) -> Step:
    active = registry.active(NO4_KIND)
    if active is not None:
        models.splitter = active.id
        return Step(f"splitter {active.id}", reused=True)
    out = _train(app, exclude_4=True, epochs=epochs)
    models.splitter = out.version_id
    threshold = out.metrics.birads4_threshold
    said = f"P(BI-RADS 5) >= {threshold.value:.3f} is 4B" if threshold else "no 4A/4B threshold"
    return Step(f"splitter {out.version_id} trained without BI-RADS 4 ({said})")


def _train(app: AppContext, *, exclude_4: bool, epochs: int) -> TrainingResult:
    from labeler.jobs.train import make_config, train_detector

    with TrainProgress() as hooks:
        return train_detector(
            app,
            config=make_config(PRESET, exclude_4=exclude_4, epochs=epochs),
            exclude_4=exclude_4,
            resume=True,
            hooks=hooks,
        )


def _encoder(app: AppContext, models: DemoModels) -> Step:
    from labeler.jobs.encoder import train_encoder_version
    from labeler.jobs.similar import build_index
    from ml_backend.encoder.config import EncoderConfig
    from ml_backend.encoder.index import index_file
    from ml_backend.encoder.train import EncoderTrainConfig

    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    active = registry.active(ENCODER_KIND)
    reused = active is not None
    if active is None:
        with TrainProgress() as hooks:
            out = train_encoder_version(
                app,
                EncoderConfig(crop_size=ENCODER_CROP, birads_head=True),
                EncoderTrainConfig(
                    method="baseline", epochs=ENCODER_EPOCHS, views_per_lesion=2, warmup_iters=10
                ),
                hooks=hooks,
            )
        models.encoder = out.version_id
    else:
        models.encoder = active.id
    if index_file(app.settings.home, models.encoder).exists():
        return Step(f"encoder {models.encoder} and its index", reused=reused)
    with ProgressBar("index lesions") as bar:
        index = build_index(app, start=bar.start, advance=bar.advance)
    return Step(
        f"encoder {models.encoder}; index of {index.confirmed} confirmed lesions and "
        f"{index.probes} pool boxes",
        reused=False,
    )


def _predict(app: AppContext, models: DemoModels) -> Step:
    from collections import Counter

    from labeler.jobs.predict import predict_pool

    with ProgressBar("pre-label") as bar:
        out = predict_pool(app, version_id=models.detector, start=bar.start, advance=bar.advance)
    models.predicted = out.predicted
    if not out.predicted:
        return Step(f"{out.already_predicted} pre-labels of {models.detector}", reused=True)
    calls = Counter(im.birads for im in out.images)
    split = sum(im.splitter is not None for im in out.images)
    listed = ", ".join(f"{n} x {c}" for c, n in sorted(calls.items()))
    return Step(f"{out.predicted} images pre-labeled ({listed}; {split} plain 4 split to 4A/4B)")


def _evaluate(app: AppContext, models: DemoModels) -> Step:
    from labeler.jobs.evaluate import evaluate_version

    lines, reused = [], True
    for version in (models.detector, models.splitter):
        with app.sessions() as session:
            stored = [
                e
                for e in evaluation_queries.evaluations(session, model_version_id=version)
                if e.split == Split.TEST.value and e.dataset == ALL
            ]
        if stored:
            metrics = stored[-1].metrics
        else:
            reused = False
            with ProgressBar(f"evaluate {version}") as bar:
                metrics = evaluate_version(
                    app, version_id=version, split=Split.TEST, start=bar.start, advance=bar.advance
                ).metrics
        auc = metrics.screening.pathology_auc
        lines.append(
            f"{version}: {metrics.n_images} images, AUC vs biopsy "
            f"{'-' if auc is None else f'{auc:.2f}'}"
        )
    return Step("; ".join(lines), reused=reused)


def _simulate(app: AppContext) -> Step:
    from labeler.jobs.simulate import SimulationConfig, simulate

    data: Path = importable(SIMULATION_SAMPLE, app.settings.data_root)
    config = SimulationConfig(
        dataset="busbra",
        data=data,
        strategy=app.settings.al_strategy,
        rounds=1,  # a seed model and one round: two points; `labeler simulate` runs more
        per_round=5,
        seed_labels=10,
        corrections=True,
        preset=PRESET,
    )
    with app.sessions() as session:
        points = simulation_queries.stored_points(session, simulation=config.name)
    if len(points) > config.rounds:
        return Step(f"simulation {config.name}: {len(points)} points", reused=True)
    result = simulate(app.settings, config, say=lambda line: None)
    return Step(f"simulation {result.config.name}: {len(result.points)} points on its curve")
