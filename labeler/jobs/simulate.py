"""The human-in-the-loop loop without humans, on a fully labeled dataset: a learning curve.

Seed N train-split images with their reference labels, train, then each round: pre-label (a
sample of) the pool, let a strategy pick K images, have simulated readers review each pre-label
against the reference label (each flips their verdict with their own error rate), decide with
the production consensus rule, fine-tune and gate with the production retrain step, and score
the serving model on the fixed test split. Every round is a point: metric vs expert reviews,
with the round's accept rate.

It is the production loop, with readers simulated: `labeler.consensus.decide` with the
settings' quorum and IoU, the strategies through their interface (`needs_of`, `build`), and
`retrain.fine_tune_and_gate` (a spawned trainer, the same gate, promotion only when the
candidate is not worse). A refused candidate leaves the active version serving, as in
production, so a round's point can repeat the last version.

The simulated pre-label is the production pipeline's (ml_backend.prelabel.pipeline: the boxes
readers are shown and the one image-category rule, graded and split as in Label Studio). A
reader accepts when its BI-RADS matches the reference (in the model's label space)
and every reference lesion is matched one-to-one at IoU >= 0.5. With `corrections`, images the
readers did not accept join training with the reference label, standing for the readers'
corrections; without it (the paper's loop) they only return to the pool.

An interrupted simulation resumes: its home keeps the database, the registry, the training
checkpoints and `simulation.json` (the last finished round). Each round draws from its own
random stream (seed, round), so a round cut short is replayed as it would have run, and its
training resumes from its checkpoint. A finished simulation, or one with other settings, starts
again from scratch.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from core.results import SimulationMetrics
from core.settings import Settings
from db.engine import make_engine, make_session_factory
from db.models import LabelStatus, Split, Verdict
from db.queries import labels as label_queries
from db.queries import simulations as simulation_queries
from db.schemas import BoxRecord
from labeler.consensus import ConsensusRule, ReaderReview, boxes_agree, decide
from labeler.context import AppContext
from labeler.importing.pipeline import run_import
from labeler.jobs.evaluate import current_manifest
from labeler.jobs.retrain import GateDecision, fine_tune_and_gate, scored_on_test
from labeler.jobs.samples import LabeledImage, labeled_images, load_rgb
from labeler.jobs.train_child import TrainRequest, train_in_child
from labeler.lock import HeldLock, single_flight
from ml_backend.active import PoolImage, rank
from ml_backend.active.features import flip_predictions, pooled_features
from ml_backend.active.strategies import build, needs_of
from ml_backend.detector.data import map_category
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.interface import ImagePrediction
from ml_backend.detector.prelabel import load_for_prelabel
from ml_backend.prelabel.pipeline import PrelabelPipeline, open_pipeline
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND

ACTOR = "labeler simulate"
STATE = "simulation.json"
NewPoint = simulation_queries.NewSimulationPoint


@dataclass(frozen=True)
class SimulationConfig:
    dataset: str
    data: Path
    strategy: str
    rounds: int = 3
    per_round: int = 50
    seed_labels: int = 100
    reader_errors: tuple[float, ...] = (0.05, 0.1, 0.15)
    epochs: int = 1
    pool_limit: int = 400
    corrections: bool = False
    seed: int = 0
    preset: str = "small"  # detector preset (ml_backend/detector/configs): small or r101-800

    @property
    def name(self) -> str:
        c = "corr" if self.corrections else "acc"
        p = "" if self.preset == "small" else f"-{self.preset}"
        return (
            f"{self.dataset}-{self.strategy}{p}-n{self.seed_labels}-k{self.per_round}-{c}"
            f"-s{self.seed}"
        )

    @property
    def readers(self) -> tuple[str, ...]:
        return tuple(f"reader-{i}" for i in range(1, len(self.reader_errors) + 1))

    def resume_key(self) -> dict[str, Any]:
        """Everything but `rounds`: a simulation may be resumed with more (or fewer) rounds."""
        return {k: str(v) for k, v in asdict(self).items() if k != "rounds"}


class SimulationState(BaseModel):
    """What `simulation.json` keeps between runs: the last round whose point is recorded."""

    config: dict[str, str]
    round: int = -1
    version: str | None = None  # the serving version after `round`
    reviews_by_reader: dict[str, int] = {}
    finished: bool = False


@dataclass(frozen=True)
class Retrained:
    """One round's fine-tune: the candidate and the gate's verdict on it."""

    round: int
    candidate: str
    gate: GateDecision


@dataclass
class Simulation:
    config: SimulationConfig
    points: list[NewPoint] = field(default_factory=list)
    retrained: list[Retrained] = field(default_factory=list)  # this run's rounds
    reviews_by_reader: dict[str, int] = field(default_factory=dict)
    resumed_after_round: int | None = None
    csv_path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "simulation": self.config.name,
            "csv": str(self.csv_path),
            "reviews_by_reader": self.reviews_by_reader,
            "resumed_after_round": self.resumed_after_round,
            "retrained": [asdict(r) for r in self.retrained],
            "points": [
                {**asdict(p), "metrics": p.metrics.model_dump(mode="json")} for p in self.points
            ],
        }


def simulate(
    settings: Settings, config: SimulationConfig, *, say: Callable[[str], None]
) -> Simulation:
    """Runs in its own home under LABELER_HOME/simulations/; each point goes to the main db (and
    the CSV) as soon as it is measured, so a simulation stopped midway keeps its rounds."""
    root = settings.home / "simulations"
    with single_flight(root / f".{config.name}.lock") as lock:
        sim_app, state = _open(settings, config, say)
        main = make_engine(settings.db_url)
        try:
            run = _Run(config, sim_app, make_session_factory(main), settings, lock, say)
            return run.go(state)
        finally:
            main.dispose()
            sim_app.engine.dispose()


def _open(
    settings: Settings, config: SimulationConfig, say: Callable[[str], None]
) -> tuple[AppContext, SimulationState]:
    """The simulation's app, resumed when an unfinished run with the same settings is there."""
    home = settings.home / "simulations" / config.name
    state = _load_state(home)
    if state is not None and not state.finished and state.config == config.resume_key():
        say(f"{config.name}: resuming after round {state.round}")
    else:
        if home.exists():
            shutil.rmtree(home)
        state = SimulationState(config=config.resume_key())
    sim = settings.model_copy(
        update={
            "home": home,
            "db_url": f"sqlite:///{home / 'labeler.db'}",
            "retrain_include_reference": False,
            "retrain_epochs": config.epochs,
            "ocr": "off",  # no reader sees these images; OCR would only cost time
        }
    )
    app = AppContext(sim)
    app.ensure_schema()
    return app, state


def _load_state(home: Path) -> SimulationState | None:
    path = home / STATE
    return SimulationState.model_validate_json(path.read_text()) if path.is_file() else None


def _save_state(home: Path, state: SimulationState) -> None:
    tmp = home / f".{STATE}.tmp"
    tmp.write_text(state.model_dump_json(indent=2))
    os.replace(tmp, home / STATE)


@dataclass
class _Run:
    config: SimulationConfig
    app: AppContext
    main: sessionmaker[Session]  # the main database, where the curve goes
    settings: Settings  # the main settings, where the CSV goes
    lock: HeldLock
    say: Callable[[str], None]

    def go(self, state: SimulationState) -> Simulation:
        result = Simulation(self.config, reviews_by_reader=dict(state.reviews_by_reader))
        if state.round >= 0:
            result.resumed_after_round = state.round
            result.points = self._stored_points(state.round)
        else:
            with self.main.begin() as session:  # a new run replaces the whole curve
                simulation_queries.delete_simulation(session, simulation=self.config.name)
        by_id = self._train_images()
        if state.round < 0:
            state.version = self._seed(by_id)
            self._record(result, state, 0, state.version, None)
        for round_ in range(state.round + 1, self.config.rounds + 1):
            assert state.version is not None
            accepted, picked = self._round(round_, state.version, by_id, result)
            self.say(f"round {round_}: {len(accepted)}/{len(picked)} accepted; fine-tuning")
            candidate, decision = fine_tune_and_gate(
                self.app,
                active=state.version,
                exclude_4=False,
                lock=self.lock,
                say=self.say,
                actor=ACTOR,
            )
            result.retrained.append(Retrained(round_, candidate, decision))
            state.version = candidate if decision.passed else state.version
            rate = len(accepted) / len(picked) if picked else None
            self._record(result, state, round_, state.version, rate)
        state.finished = True
        _save_state(self.app.settings.home, state)
        return result

    def _train_images(self) -> dict[int, LabeledImage]:
        with self.app.sessions() as session:
            imported = bool(labeled_images(session, split=Split.TRAIN))
        if not imported:
            self.say(f"{self.config.name}: importing into {self.app.settings.home}")
            run_import(
                self.config.data,
                dataset=self.config.dataset,
                settings=self.app.settings,
                sessions=self.app.sessions,
            )
        with self.app.sessions() as session:
            return {im.image_id: im for im in labeled_images(session, split=Split.TRAIN)}

    def _seed(self, by_id: dict[int, LabeledImage]) -> str:
        """Round 0: reference labels for a seed sample, and the first model trained on them."""
        rng = np.random.default_rng([self.config.seed, 0])
        n = min(self.config.seed_labels, len(by_id))
        seed = sorted(int(i) for i in rng.choice(sorted(by_id), size=n, replace=False))
        _label(self.app.sessions, [by_id[i] for i in seed], round_=0)
        active = ModelRegistry.for_settings(self.app.settings, self.app.sessions).active(
            DETECTOR_KIND
        )
        if active is not None:  # trained before the interruption: the first one is promoted
            return active.id
        self.say(f"training on {len(seed)} seed labels")
        request = TrainRequest(
            settings=self.app.settings,
            parent=None,
            exclude_4=False,
            epochs=self.config.epochs,
            include_reference=False,
            resume=True,
            threads=torch.get_num_threads(),
            preset=self.config.preset,
        )
        return train_in_child(request, lock=self.lock, say=self.say).version_id

    def _round(
        self, round_: int, version: str, by_id: dict[int, LabeledImage], result: Simulation
    ) -> tuple[list[int], list[tuple[int, ImagePrediction]]]:
        """Pick and review; the same round replayed after a kill picks and decides the same."""
        rng = np.random.default_rng([self.config.seed, round_])
        pipeline = self._pipeline(version)
        labeled = self._labeled_before(round_, by_id)
        pool = _pool(by_id, set(labeled), rng, self.config.pool_limit)
        picked = _pick(self.app, pipeline, pool, [by_id[i] for i in labeled], by_id, self.config)
        accepted, reviews = _review(self.app, pipeline, picked, by_id, self.config, rng, round_)
        for reader, n in reviews.items():
            result.reviews_by_reader[reader] = result.reviews_by_reader.get(reader, 0) + n
        return accepted, picked

    def _labeled_before(self, round_: int, by_id: dict[int, LabeledImage]) -> list[int]:
        """Images with an accepted label from an earlier round (a replayed round's own labels
        do not count, so the replay sees the pool the first attempt saw)."""
        with self.app.sessions() as session:
            rows = label_queries.accepted_labels(session)
        return [img.id for img, label in rows if label.round < round_ and img.id in by_id]

    def _pipeline(self, version: str) -> PrelabelPipeline:
        """The production pre-label pipeline of `version` in the simulation's home (its
        calibrator; a grader or splitter only if one is active there)."""
        registry = ModelRegistry.for_settings(self.app.settings, self.app.sessions)
        settings = self.app.settings
        return open_pipeline(registry, version, settings, lambda f: load_for_prelabel(f, settings))

    def _record(
        self,
        result: Simulation,
        state: SimulationState,
        round_: int,
        version: str,
        rate: float | None,
    ) -> None:
        """The serving version on the test split (the gate's stored evaluation when it made
        one), appended to the curve in the main db and the CSV; then the state moves on."""
        metrics = scored_on_test(self.app, version, current_manifest(self.app, Split.TEST))
        with self.app.sessions() as session:
            n_labeled = len(label_queries.accepted_labels(session))
        point = NewPoint(
            self.config.name,
            self.config.strategy,
            round_,
            sum(result.reviews_by_reader.values()),
            n_labeled,
            rate,
            SimulationMetrics.of(metrics, version=version),
        )
        result.points.append(point)
        with self.main.begin() as session:
            simulation_queries.save_simulation_point(session, point=point)
        result.csv_path = _write_csv(self.settings, result)
        state.round, state.reviews_by_reader = round_, dict(result.reviews_by_reader)
        _save_state(self.app.settings.home, state)

    def _stored_points(self, last_round: int) -> list[NewPoint]:
        with self.main() as session:
            points = simulation_queries.stored_points(session, simulation=self.config.name)
        return [p for p in points if p.round <= last_round]


def _label(
    sessions: sessionmaker[Session],
    images: Sequence[LabeledImage],
    *,
    round_: int,
    decided: dict[int, tuple[tuple[BoxRecord, ...], Birads | None]] | None = None,
    status: LabelStatus = LabelStatus.ACCEPTED,
) -> None:
    """Labels of `round_` (an upsert: replaying a round writes the same rows): the decided
    pre-label where there is one, else the reference label."""
    with sessions.begin() as session:
        for im in images:
            boxes, birads = (decided or {}).get(im.image_id, (_reference_boxes(im), None))
            label_queries.upsert_label(
                session,
                image_id=im.image_id,
                round=round_,
                status=status,
                boxes=boxes,
                birads=birads or im.image_category,
                model_version_id=None,
            )


def _reference_boxes(im: LabeledImage) -> tuple[BoxRecord, ...]:
    return tuple(BoxRecord(xyxy=b, birads=c) for b, c in zip(im.boxes, im.categories, strict=True))


def _pool(
    by_id: dict[int, LabeledImage], done: set[int], rng: np.random.Generator, limit: int
) -> list[int]:
    pool = sorted(set(by_id) - done)
    if len(pool) > limit:
        pool = sorted(int(i) for i in rng.choice(pool, size=limit, replace=False))
    return pool


def _pick(
    app: AppContext,
    pipeline: PrelabelPipeline,
    pool: list[int],
    labeled: list[LabeledImage],
    by_id: dict[int, LabeledImage],
    config: SimulationConfig,
) -> list[tuple[int, ImagePrediction]]:
    """The strategy's top K of the pool (graded predictions), given what it says it needs."""
    home = app.settings.home
    needs = needs_of(config.strategy)
    detector = _detector(pipeline)
    images = [load_rgb(home, by_id[i].png_path) for i in pool]
    preds = [p for i in range(0, len(images), 8) for p in pipeline.graded(images[i : i + 8])]
    none: list[Any] = [None] * len(pool)
    flipped = list(flip_predictions(detector, images)) if "flipped" in needs else none
    features = list(pooled_features(detector, images)) if "features" in needs else none
    options: dict[str, object] = {"seed": config.seed}
    if "features" in needs:  # the labeled set, seen through the same extractor
        rgb = [load_rgb(home, im.png_path) for im in labeled[:500]]
        options["labeled"] = pooled_features(detector, rgb)
    items = [
        PoolImage(image_id=i, prediction=p, width=img.shape[1], flipped=f, features=x)
        for i, p, img, f, x in zip(pool, preds, images, flipped, features, strict=True)
    ]
    chosen = rank(build(config.strategy, **options), items, k=config.per_round)
    pred_of = dict(zip(pool, preds, strict=True))
    return [(i, pred_of[i]) for i in chosen]


def _review(
    app: AppContext,
    pipeline: PrelabelPipeline,
    picked: list[tuple[int, ImagePrediction]],
    by_id: dict[int, LabeledImage],
    config: SimulationConfig,
    rng: np.random.Generator,
    round_: int,
) -> tuple[list[int], Counter[str]]:
    """Every reader reviews every picked image's pre-label, as the pipeline makes it for Label
    Studio; `decide` (the production rule) settles it. Returns the accepted image ids and the
    reviews each reader made."""
    rule = ConsensusRule(app.settings.consensus_quorum, app.settings.consensus_iou)
    accepted, rest = [], []
    decided: dict[int, tuple[tuple[BoxRecord, ...], Birads | None]] = {}
    reviews: Counter[str] = Counter()
    for image_id, pred in picked:
        prelabel = pipeline.finish(pred, load_rgb(app.settings.home, by_id[image_id].png_path))
        boxes = tuple(  # what readers are shown, and the pipeline's category over it
            BoxRecord(xyxy=d.xyxy, birads=d.category, score=d.score)
            for d in pipeline.shown.pick(prelabel.prediction.detections)
        )
        category = prelabel.category
        match = _matches(boxes, category, by_id[image_id], _detector(pipeline))
        said = [
            _reader_review(reader, match != (rng.random() < error), boxes, category)
            for reader, error in zip(config.readers, config.reader_errors, strict=True)
        ]
        reviews.update(r.reader for r in said)
        decision = decide(boxes, category, said, rule)
        if decision.status is LabelStatus.ACCEPTED:
            accepted.append(image_id)
            decided[image_id] = (decision.boxes, decision.birads)
        else:
            rest.append(image_id)
    _label(app.sessions, [by_id[i] for i in accepted], round_=round_, decided=decided)
    status = LabelStatus.ACCEPTED if config.corrections else LabelStatus.REJECTED
    _label(app.sessions, [by_id[i] for i in rest], round_=round_, status=status)
    return accepted, reviews


def _detector(pipeline: PrelabelPipeline) -> FasterRCNNDetector:
    """The pipeline's detector, for what only the torchvision model offers (its features)."""
    assert isinstance(pipeline.detector, FasterRCNNDetector)
    return pipeline.detector


def _reader_review(
    reader: str, accepts: bool, boxes: tuple[BoxRecord, ...], category: Birads
) -> ReaderReview:
    """An accepting reader keeps the pre-label as it is; a rejecting one sends it back."""
    if accepts:
        return ReaderReview(reader, Verdict.ACCEPT, boxes, category)
    return ReaderReview(reader, Verdict.REJECT, (), None)


def _matches(
    boxes: tuple[BoxRecord, ...],
    category: Birads,
    truth: LabeledImage,
    detector: FasterRCNNDetector,
) -> bool:
    """The pre-label says what the reference says, in the model's label space."""
    space = detector.config.box_categories
    want = map_category(truth.image_category, (*space, *detector.label_space))
    if want is None or category != want:
        return False
    ref = tuple(
        BoxRecord(xyxy=b, birads=map_category(c, space))
        for b, c in zip(truth.boxes, truth.categories, strict=True)
    )
    return boxes_agree(boxes, ref, iou=0.5)


def _write_csv(settings: Settings, result: Simulation) -> Path:
    path = settings.home / "simulations" / f"{result.config.name}.csv"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:  # whole or not at all: a full disk keeps the last CSV and leaves no temp file
        _write_rows(tmp, result)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_rows(path: Path, result: Simulation) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "simulation",
                "strategy",
                "round",
                "reviews",
                "labeled_images",
                "accept_rate",
                "map50",
                "lesion_map50",
                "auc",
                "version",
            ]
        )
        for p in result.points:
            m = p.metrics
            writer.writerow(
                [
                    p.simulation,
                    p.strategy,
                    p.round,
                    p.reviews,
                    p.labeled_images,
                    p.accept_rate,
                    m.map50,
                    m.lesion_map50,
                    m.auc,
                    m.version,
                ]
            )
