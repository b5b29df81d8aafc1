"""The human-in-the-loop loop without humans, on a fully labeled dataset: a learning curve.

Seed N train-split images with their reference labels, train, then each round: pre-label (a
sample of) the pool, let a strategy pick K images, have three simulated readers check each
pre-label against the reference label (each flips their verdict with their own error rate),
keep what all three accept, fine-tune, and evaluate on the fixed test split. Every round is a
point: metric vs expert reviews (3 per image), with the round's accept rate.

The simulated pre-label is the boxes at or above LABELER_SCORE_THRESHOLD (the image's BI-RADS
rule). A reader accepts when its BI-RADS matches the reference (in the model's label space)
and every reference lesion is matched one-to-one at IoU >= 0.5. With `corrections`, images the
readers did not accept join training with the reference label, standing for the readers'
corrections; without it (the paper's loop) they only return to the pool.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import migrate, queries
from db.engine import make_engine, make_session_factory
from db.models import LabelStatus, Split
from db.schemas import BoxRecord
from core.settings import Settings
from labeler.consensus import boxes_agree
from labeler.context import AppContext
from labeler.importing.pipeline import run_import
from labeler.jobs.evaluate import evaluate_version
from labeler.jobs.samples import LabeledImage, labeled_images, load_rgb
from labeler.jobs.train import config_of_version, make_config, train_detector
from labeler.jobs.versions import intact_path
from ml_backend.active import PoolImage, by_name, rank
from ml_backend.active.features import flip_predictions, pooled_features
from ml_backend.detector.data import map_category
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.interface import ImagePrediction
from ml_backend.registry import ModelRegistry


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


@dataclass
class Simulation:
    config: SimulationConfig
    points: list[queries.NewSimulationPoint] = field(default_factory=list)
    csv_path: Path | None = None


def simulate(
    settings: Settings, config: SimulationConfig, *, say: Callable[[str], None]
) -> Simulation:
    """Runs in a fresh home under LABELER_HOME/simulations/; each point goes to the main db (and
    the CSV) as soon as it is measured, so a simulation stopped midway keeps its rounds."""
    sim_app = _sim_app(settings, config)
    rng = np.random.default_rng(config.seed)
    say(f"{config.name}: importing into {sim_app.settings.home}")
    run_import(
        config.data, dataset=config.dataset, settings=sim_app.settings, sessions=sim_app.sessions
    )
    with sim_app.sessions() as session:
        train = labeled_images(session, split=Split.TRAIN)
    by_id = {im.image_id: im for im in train}
    seed = sorted(
        rng.choice(sorted(by_id), size=min(config.seed_labels, len(by_id)), replace=False)
    )
    _label(sim_app.sessions, [by_id[int(i)] for i in seed], round_=0)
    say(f"training on {len(seed)} seed labels")
    version = _train(sim_app, config, parent=None)
    result = Simulation(config)
    _record(settings, result, _point(sim_app, config, version, 0, 0, len(seed), None))
    # core-set needs each round's labeled features, so _pick builds it
    options = {"seed": config.seed} if config.strategy == "random" else {}
    strategy = None if config.strategy == "coreset" else by_name(config.strategy, **options)
    reviewed = 0
    for round_ in range(1, config.rounds + 1):
        detector = FasterRCNNDetector.load(_path(sim_app, version), device=settings.device)
        pool = _pool(sim_app, by_id, rng, config.pool_limit)
        picked = _pick(sim_app, detector, strategy, pool, by_id, config)
        accepted = _review(sim_app, detector, picked, by_id, config, rng, round_)
        reviewed += len(picked)
        say(f"round {round_}: {len(accepted)}/{len(picked)} accepted; fine-tuning")
        version = _train(sim_app, config, parent=version)
        with sim_app.sessions() as session:
            n_labeled = len(queries.accepted_labels(session))
        rate = len(accepted) / len(picked) if picked else None
        point = _point(sim_app, config, version, round_, 3 * reviewed, n_labeled, rate)
        _record(settings, result, point)
    return result


def _sim_app(settings: Settings, config: SimulationConfig) -> AppContext:
    """A scratch home: a rerun must not start from the labels of the last run."""
    home = settings.home / "simulations" / config.name
    if home.exists():
        shutil.rmtree(home)
    sim = settings.model_copy(
        update={
            "home": home,
            "db_url": f"sqlite:///{home / 'labeler.db'}",
            "retrain_include_reference": False,
            "ocr": "off",  # no reader sees these images; OCR would only cost time
        }
    )
    home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(make_engine(sim.db_url))
    return AppContext(sim)


def _path(app: AppContext, version: str) -> Path:
    return intact_path(ModelRegistry.for_settings(app.settings, app.sessions), version)


def _train(app: AppContext, config: SimulationConfig, *, parent: str | None) -> str:
    if parent is None:
        cfg = make_config(config.preset, exclude_4=False, epochs=config.epochs)
    else:
        cfg = config_of_version(app, parent, epochs=config.epochs)
    out = train_detector(
        app, config=cfg, exclude_4=False, resume=False, init_from=parent, include_reference=False
    )
    if not out.promoted:
        ModelRegistry.for_settings(app.settings, app.sessions).promote(
            out.version_id, actor="labeler simulate", reason="next round"
        )
    return out.version_id


def _label(
    sessions: sessionmaker[Session],
    images: Sequence[LabeledImage],
    *,
    round_: int,
    boxes: dict[int, tuple[BoxRecord, ...]] | None = None,
    status: LabelStatus = LabelStatus.ACCEPTED,
) -> None:
    with sessions.begin() as session:
        for im in images:
            own = boxes.get(im.image_id) if boxes else None
            queries.upsert_label(
                session,
                image_id=im.image_id,
                round=round_,
                status=status,
                boxes=own if own is not None else _reference_boxes(im),
                birads=im.image_category,
                model_version_id=None,
            )


def _reference_boxes(im: LabeledImage) -> tuple[BoxRecord, ...]:
    return tuple(BoxRecord(xyxy=b, birads=c) for b, c in zip(im.boxes, im.categories, strict=True))


def _pool(
    app: AppContext, by_id: dict[int, LabeledImage], rng: np.random.Generator, limit: int
) -> list[int]:
    with app.sessions() as session:
        done = {img.id for img, _ in queries.accepted_labels(session)}
    pool = sorted(set(by_id) - done)
    if len(pool) > limit:
        pool = sorted(int(i) for i in rng.choice(pool, size=limit, replace=False))
    return pool


def _pick(
    app: AppContext,
    detector: FasterRCNNDetector,
    strategy: Any,
    pool: list[int],
    by_id: dict[int, LabeledImage],
    config: SimulationConfig,
) -> list[tuple[int, ImagePrediction]]:
    home = app.settings.home
    images = [load_rgb(home, by_id[i].png_path) for i in pool]
    preds = [p for i in range(0, len(images), 8) for p in detector.predict(images[i : i + 8])]
    flipped: list[ImagePrediction | None] = [None] * len(pool)
    features: list[Any] = [None] * len(pool)
    kwargs: dict[str, Any] = {}
    if config.strategy == "flip":
        flipped = list(flip_predictions(detector, images))
    if config.strategy == "coreset":
        features = list(pooled_features(detector, images))
        with app.sessions() as session:
            labeled = [
                by_id[img.id] for img, _ in queries.accepted_labels(session) if img.id in by_id
            ]
        rgb = [load_rgb(home, im.png_path) for im in labeled[:500]]
        kwargs["labeled"] = pooled_features(detector, rgb)
        strategy = by_name("coreset", **kwargs)
    items = [
        PoolImage(image_id=i, prediction=p, width=img.shape[1], flipped=f, features=x)
        for i, p, img, f, x in zip(pool, preds, images, flipped, features, strict=True)
    ]
    chosen = rank(strategy, items, k=config.per_round)
    pred_of = dict(zip(pool, preds, strict=True))
    return [(i, pred_of[i]) for i in chosen]


def _review(
    app: AppContext,
    detector: FasterRCNNDetector,
    picked: list[tuple[int, ImagePrediction]],
    by_id: dict[int, LabeledImage],
    config: SimulationConfig,
    rng: np.random.Generator,
    round_: int,
) -> list[int]:
    threshold = app.settings.score_threshold
    accepted, rest, prelabels = [], [], {}
    for image_id, pred in picked:
        truth = by_id[image_id]
        boxes = tuple(
            BoxRecord(xyxy=d.xyxy, birads=d.category, score=d.score)
            for d in pred.detections
            if d.score >= threshold
        )
        match = _matches(boxes, pred.image_category(threshold=threshold), truth, detector)
        votes = [match != (rng.random() < e) for e in config.reader_errors]
        if all(votes):
            accepted.append(image_id)
            prelabels[image_id] = boxes
        else:
            rest.append(image_id)
    _label(app.sessions, [by_id[i] for i in accepted], round_=round_, boxes=prelabels)
    status = LabelStatus.ACCEPTED if config.corrections else LabelStatus.REJECTED
    _label(app.sessions, [by_id[i] for i in rest], round_=round_, status=status)
    return accepted


def _matches(
    boxes: tuple[BoxRecord, ...], category: Any, truth: LabeledImage, detector: FasterRCNNDetector
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


def _point(
    app: AppContext,
    config: SimulationConfig,
    version: str,
    round_: int,
    reviews: int,
    labeled: int,
    rate: float | None,
) -> queries.NewSimulationPoint:
    metrics = evaluate_version(app, version_id=version, split=Split.TEST)["metrics"]
    screening = metrics.get("screening") or {}
    keep = {
        "map50": metrics.get("map50"),
        "lesion_map50": metrics.get("lesion_map50"),
        "auc": screening.get("auc"),
        "acc": _estimate(screening.get("ACC")),
        "sen": _estimate(screening.get("SEN")),
        "spe": _estimate(screening.get("SPE")),
        "version": version,
    }
    return queries.NewSimulationPoint(
        config.name, config.strategy, round_, reviews, labeled, rate, keep
    )


def _estimate(value: Any) -> float | None:
    return float(value["value"]) if isinstance(value, dict) and "value" in value else None


def _record(settings: Settings, result: Simulation, point: queries.NewSimulationPoint) -> None:
    """Append the point, replace the curve's rows in the main db, and rewrite the CSV."""
    result.points.append(point)
    sessions = make_session_factory(make_engine(settings.db_url))
    with sessions.begin() as session:
        if len(result.points) == 1:  # a rerun of the same name replaces the whole curve
            queries.delete_simulation(session, simulation=result.config.name)
        queries.save_simulation_point(session, point=point)
    _write_csv(settings, result)


def _write_csv(settings: Settings, result: Simulation) -> None:
    path = settings.home / "simulations" / f"{result.config.name}.csv"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:  # whole or not at all: a full disk keeps the last CSV and leaves no temp file
        _write_rows(tmp, result)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    result.csv_path = path


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
                    m["map50"],
                    m["lesion_map50"],
                    m["auc"],
                    m["version"],
                ]
            )
