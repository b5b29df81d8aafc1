"""Train a detector on the train split, score it on val, register it as an immutable version.

`--resume` continues the newest unfinished run on the same data from its last checkpoint.
The first version of a kind is promoted; later ones wait for `labeler models promote` (or the
retrain job's gate).

Under torchrun (`labeler train --nproc N`) every process runs `train_detector` with its `World`:
rank 0 opens the run in the database, holds its folder, writes the checkpoints, validates and
registers the version; the others train their share and get rank 0's result.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.birads import Birads, Pathology, is_subcategory_of_4
from core.errors import JobFailedError
from core.results import Birads4Threshold, DetectorVersionMetrics, ValidationSummary
from db.models import Split
from db.queries import runs as run_queries
from labeler.context import AppContext
from labeler.jobs.evaluate import predict_usable, score_predictions
from labeler.jobs.inference import predict_all
from labeler.jobs.samples import (
    LabeledImage,
    labeled_images,
    manifest_hash,
    training_samples,
    training_set,
)
from labeler.jobs.versions import DETECTOR_KIND, NO4_KIND, intact_path
from labeler.lock import AlreadyRunningError, single_flight
from ml_backend.detector.config import DetectorConfig, load_config
from ml_backend.detector.data import Sample
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.train import TrainResult, train
from ml_backend.evaluation.birads4 import choose_threshold, p5_of
from ml_backend.prelabel.calibration import Calibrator, fit_on_predictions
from ml_backend.prelabel.category import ShownBoxes
from ml_backend.registry import ModelRegistry
from ml_backend.training.distributed import SINGLE, World
from ml_backend.training.hooks import TrainHooks

TRAINER_LOCK = ".trainer.lock"  # in runs/run-N: held by the live trainer of run N


class NoTrainingDataError(JobFailedError):
    pass


@dataclass(frozen=True)
class TrainingResult:
    version_id: str
    kind: str
    run_id: int
    epochs: int
    resumed_from_epoch: int
    n_train_images: int
    skipped: dict[str, int]
    promoted: bool
    metrics: DetectorVersionMetrics


def make_config(name: str, *, exclude_4: bool, epochs: int | None) -> DetectorConfig:
    config = load_config(name)
    if exclude_4:
        config = config.model_copy(update={"label_space": "no-4"})
    if epochs is not None:
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"epochs": epochs})}
        )
    return config


def config_of_version(app: AppContext, version_id: str, *, epochs: int | None) -> DetectorConfig:
    """The config a registered version was trained with, for fine-tuning it."""
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    config = DetectorConfig.model_validate(registry.get(version_id).config)
    if epochs is not None:
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"epochs": epochs})}
        )
    return config


def train_detector(
    app: AppContext,
    *,
    config: DetectorConfig,
    exclude_4: bool,
    resume: bool,
    hooks: TrainHooks | None = None,
    init_from: str | None = None,
    include_reference: bool = True,
    world: World = SINGLE,
) -> TrainingResult:
    """Train (or fine-tune `init_from`, a version id) on accepted labels + the reference seed."""
    kind = NO4_KIND if exclude_4 else DETECTOR_KIND
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    parent = intact_path(registry, init_from) if init_from else None
    with app.sessions() as session:
        train_images = training_set(session, include_reference=include_reference)
        val_images = labeled_images(session, split=Split.VAL)
    samples, skipped = training_samples(train_images, config, exclude_4=exclude_4)
    if not samples:
        raise NoTrainingDataError(
            "no labeled training images: run `labeler demo` or `labeler import`"
        )
    world.share(config.train.batch_size)  # a process count that cannot split it fails here
    manifest = manifest_hash(samples, {im.png_path: im.sha256 for im in train_images})
    run_id, resumed = world.from_main(
        lambda: _open_run(app, kind, config, manifest, len(samples), resume)
    )
    work_dir = app.settings.home / "runs" / f"run-{run_id}"
    owned = _own_folder(work_dir, run_id, fresh=not resumed) if world.is_main else nullcontext()
    with owned:
        world.barrier()  # rank 0 holds the folder (and cleared a stale one) before anyone trains
        with _recorded(app, run_id) if world.is_main else nullcontext():
            result = train(
                config,
                samples,
                home=app.settings.home,
                work_dir=work_dir,
                resume=resumed,
                device=world.device(app.settings.device),
                hooks=hooks,
                init_from=parent,
                world=world,
            )
        finished = world.from_main(
            lambda: _finish(
                app,
                kind,
                config,
                manifest,
                result,
                (samples, skipped),
                train_images,
                val_images,
                init_from,
                run_id,
            )
        )
        if world.is_main:
            shutil.rmtree(work_dir, ignore_errors=True)  # the registered folder holds the weights
    return finished


def _finish(
    app: AppContext,
    kind: str,
    config: DetectorConfig,
    manifest: str,
    result: TrainResult,
    used: tuple[list[Sample], Counter[str]],
    train_images: list[LabeledImage],
    val_images: list[LabeledImage],
    init_from: str | None,
    run_id: int,
) -> TrainingResult:
    """Rank 0, after training: validate, calibrate, register, promote the first of its kind."""
    with _recorded(app, run_id):
        exclude_4, (samples, skipped) = kind == NO4_KIND, used
        val, calibrator = _validate(app, result.detector, val_images)
        metrics = DetectorVersionMetrics(
            n_train_images=len(samples),
            val=val,
            birads4_threshold=(
                _birads4_threshold(app, result.detector, train_images) if exclude_4 else None
            ),
        )
        version = _register(
            app, kind, config, manifest, metrics, result.detector, init_from, calibrator
        )
        registry = ModelRegistry.for_settings(app.settings, app.sessions)
        promoted = registry.active(kind) is None
        if promoted:
            registry.promote(version, actor="labeler train", reason="first model of its kind")
        with app.sessions.begin() as session:
            run_queries.finish_training_run(
                session,
                run_id=run_id,
                status="succeeded",
                epochs_done=result.epochs_done,
                model_version_id=version,
            )
        return TrainingResult(
            version,
            kind,
            run_id,
            result.epochs_done,
            result.resumed_from,
            len(samples),
            dict(skipped),
            promoted,
            metrics,
        )


@contextmanager
def _recorded(app: AppContext, run_id: int) -> Iterator[None]:
    """Rank 0 marks the run failed (interrupted on Ctrl-C) when training or registering raises,
    and nothing else: a failed result broadcast must not undo a registered run."""
    try:
        yield
    except BaseException as exc:
        with app.sessions.begin() as session:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run_queries.finish_training_run(
                session, run_id=run_id, status=status, epochs_done=0, error=str(exc)[:2000]
            )
        raise


@contextmanager
def _own_folder(work_dir: Path, run_id: int, *, fresh: bool) -> Iterator[None]:
    """The run folder's lock, held by the trainer for its whole life, so two live trainers never
    share a folder (a `--resume` of a run in use exits with code 4). A fresh run starts from an
    empty folder: a stale one (left by a database made anew) is cleared once the lock is held."""
    with ExitStack() as stack:
        try:
            held = stack.enter_context(single_flight(work_dir / TRAINER_LOCK))
        except AlreadyRunningError as exc:
            raise AlreadyRunningError(
                f"training run {run_id} is in use by a live trainer ({exc}); wait for it to "
                "finish, or train without --resume"
            ) from None
        for stale in work_dir.iterdir() if fresh else ():
            if stale != held.path:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        yield


def _open_run(
    app: AppContext, kind: str, config: DetectorConfig, manifest: str, n: int, resume: bool
) -> tuple[int, bool]:
    """(run id, whether it continues an unfinished run)."""
    with app.sessions.begin() as session:
        if resume:
            run = run_queries.unfinished_training_run(session, kind=kind, manifest=manifest)
            if run is not None:
                run.status = "running"
                return run.id, True
        run = run_queries.start_training_run(
            session,
            kind=kind,
            config=config.model_dump(mode="json"),
            n_train_images=n,
            manifest=manifest,
        )
        return run.id, False


def _validate(
    app: AppContext, detector: FasterRCNNDetector, images: list[LabeledImage]
) -> tuple[ValidationSummary | None, Calibrator | None]:
    """Validation metrics, and the calibrator + operating point fitted on the same predictions
    (settings.target_sensitivity); no calibrator without benign and malignant pathology."""
    if not images:
        return None, None
    usable, preds = predict_usable(app, detector, images)
    calibrator = fit_on_predictions(
        [im.ground_truth() for im in usable],
        preds,
        shown=ShownBoxes.from_settings(app.settings),
        target_sensitivity=app.settings.target_sensitivity,
    )
    metrics = score_predictions(app, detector.label_space, usable, preds, calibrator=calibrator)
    return ValidationSummary.of(metrics), calibrator


def _birads4_threshold(
    app: AppContext, detector: FasterRCNNDetector, images: list[LabeledImage]
) -> Birads4Threshold:
    """Threshold on P(BI-RADS 5) that best separates biopsy-benign from -malignant BI-RADS 4
    training lesions (Youden's J): 4B at or above it, 4A below.

    Plain-4 images (BUS-BRA) are used first, so every image with an expert 4A/4B label stays
    unseen and can score the rule (Table III); without them, 4A/4B/4C training images are used.
    """
    kinds: tuple[tuple[Literal["plain-4", "subcategories"], Callable[[Birads], bool]], ...] = (
        ("plain-4", lambda c: c is Birads.B4),
        ("subcategories", is_subcategory_of_4),
    )
    for source, wanted in kinds:
        fours = [im for im in images if wanted(im.image_category) and im.pathology is not None]
        malignant = [im.pathology is Pathology.MALIGNANT for im in fours]
        if len(set(malignant)) == 2:
            preds = predict_all(
                detector,
                app.settings.home,
                [im.png_path for im in fours],
                batch_size=app.settings.predict_batch_size,
            )
            value = choose_threshold([p5_of(p) for p in preds], malignant)
            return Birads4Threshold(value=value, chosen_from=source, n_images=len(fours))
    return Birads4Threshold(value=0.5, chosen_from="default", n_images=0)


def _register(
    app: AppContext,
    kind: str,
    config: DetectorConfig,
    manifest: str,
    metrics: DetectorVersionMetrics,
    detector: FasterRCNNDetector,
    parent_id: str | None,
    calibrator: Calibrator | None,
) -> str:
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    with registry.staging(kind) as staged:
        detector.save(staged)
        if calibrator is not None:
            calibrator.save(staged)  # sealed with the weights: calibration.json
        info = registry.register(
            staged,
            kind=kind,
            label_space=[c.value for c in config.categories],
            config=config.model_dump(mode="json"),
            data_manifest_sha256=manifest,
            metrics=metrics,
            parent_id=parent_id,
        )
    return info.id
