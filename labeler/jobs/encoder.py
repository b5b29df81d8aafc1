"""Train the lesion encoder on the db's labeled lesions, score it on held-out data, register it.

Training data: the train split (reference labels plus accepted reader labels), or, with a fold
K, every fold but K; the held-out part is the test split or fold K (reference labels: they
carry the biopsy pathology). Without a fold, the validation split's reference lesions fit the
grader's calibrator (prelabel.calibration: Platt scaling and the operating point for
settings.target_sensitivity), sealed with the version. The first encoder is promoted; later
ones wait for `labeler models promote`, as detectors do.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.errors import BadInputError
from core.results import EncoderScores, EncoderVersionMetrics
from labeler.context import AppContext
from labeler.jobs.lesions import lesion_samples
from ml_backend.encoder.checkpoint import save_encoder
from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.data import LesionCropDataset, LesionSample
from ml_backend.encoder.evaluate import embed, evaluate_fold
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.targets import MALIGNANT
from ml_backend.encoder.train import EncoderTrainConfig, EncoderTrainResult, train_encoder
from ml_backend.prelabel.calibration import Calibrator, fit_birads_cuts, fit_calibrator
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import ENCODER_KIND
from ml_backend.training.distributed import SINGLE, World
from ml_backend.training.hooks import TrainHooks

LABEL_SPACE = ("benign", "malignant")


class NoLesionsError(BadInputError):
    """Too few labeled lesions to train on."""


@dataclass(frozen=True)
class EncoderTrainOutcome:
    version_id: str
    kind: str
    promoted: bool
    method: str
    backbone: str
    epochs: int
    held_out: str  # "test split" or "fold K"
    n_train_images: int
    n_train_lesions: int
    n_test_images: int
    losses: list[float]
    metrics: EncoderVersionMetrics
    seconds: float
    calibrated_on: int  # validation lesions the grader's calibrator was fitted on (0: none)
    threshold: float | None  # its operating point on P(malignant); None: not calibrated


def split_samples(
    samples: Sequence[LesionSample], *, fold: int | None, test_fold: int
) -> tuple[list[LesionSample], list[LesionSample], str]:
    """(train, held out, its name): folds are patient-disjoint, and so are the splits. Fold
    cross-validation trains on the test fold too, never on an image imported into the test
    split outside it (`import --split test`: an external set)."""
    if fold is None:
        train = [s for s in samples if s.split == "train"]
        test = [s for s in samples if s.split == "test" and s.source == "reference"]
        return train, test, "test split"
    train = [
        s
        for s in samples
        if s.fold != fold and not (s.split == "test" and s.fold != test_fold)  # not external
    ]
    test = [s for s in samples if s.fold == fold and s.source == "reference"]
    return train, test, f"fold {fold}"


def validation_samples(samples: Sequence[LesionSample]) -> list[LesionSample]:
    """The reference lesions of the validation split: what the encoder's calibrator is fitted
    on (never trained on, never the test split)."""
    return [s for s in samples if s.split == "val" and s.source == "reference"]


def _calibrate(
    app: AppContext, model: LesionEncoder, crops: LesionCropDataset, val: Sequence[LesionSample]
) -> Calibrator | None:
    """The encoder grader's calibrator and operating point on the validation lesions, with the
    cut points that read its BI-RADS head; None without both benign and malignant lesions there
    (the version is then uncalibrated)."""
    known = [i for i, s in enumerate(val) if s.pathology is not None]
    if len({val[i].pathology for i in known}) < 2:
        return None
    out = embed(model, crops)
    calibrator = fit_calibrator(
        [val[i].pathology == MALIGNANT for i in known],
        [float(out.malignant_prob[i]) for i in known],
        target_sensitivity=app.settings.target_sensitivity,
        grader="encoder",
    )
    if out.birads is None:
        return calibrator
    graded = [(float(out.birads[i]), s.birads) for i, s in enumerate(val) if s.birads]
    cuts = fit_birads_cuts([score for score, _ in graded], [c for _, c in graded])
    return calibrator.model_copy(update={"birads_cuts": cuts})


def manifest_hash(samples: Sequence[LesionSample]) -> str:
    """Same crops and labels, same hash (png paths are content hashes)."""
    rows = sorted(
        (s.png_path, list(s.box), s.lesion_key, s.pathology, s.birads and s.birads.value)
        for s in samples
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _check(train: Sequence[LesionSample]) -> None:
    n_lesions = len({s.lesion_key for s in train})
    if n_lesions < 2:
        raise NoLesionsError(
            f"{n_lesions} labeled lesions to train on, at least 2 are needed: "
            "`labeler import` a labeled dataset first"
        )
    if all(s.pathology is None for s in train):
        raise NoLesionsError("no training lesion has a benign/malignant pathology")


def train_encoder_version(
    app: AppContext,
    model_config: EncoderConfig,
    train_config: EncoderTrainConfig,
    *,
    fold: int | None = None,
    hooks: TrainHooks | None = None,
    log: Callable[[str], None] = lambda _: None,
    world: World = SINGLE,
) -> EncoderTrainOutcome:
    """Train, evaluate on the held-out part, register (and promote the first of its kind).

    Under torchrun every process loads the crops and trains its share; rank 0 scores,
    calibrates and registers, and every rank returns its outcome."""
    with app.sessions() as session:
        samples = lesion_samples(session)
    train, test, held_out = split_samples(samples, fold=fold, test_fold=app.settings.test_fold)
    _check(train)
    if fold is not None and not test:
        raise NoLesionsError(f"fold {fold} holds no labeled lesion to score")
    val = validation_samples(samples) if fold is None else []
    log(f"loading {len(train) + len(test) + len(val)} lesion crops")
    data = LesionCropDataset.load(
        [*train, *test, *val],
        app.settings.home,
        size=model_config.crop_size,
        margin=model_config.crop_margin,
        augment=False,
        workers=min(4, os.cpu_count() or 1),
    )
    train_set = data.subset(range(len(train)), augment=True)
    log(f"training {train_config.method} on {len(train)} images, {held_out} held out")
    result = train_encoder(
        train_set,
        model_config,
        train_config,
        device=world.device(app.settings.device),
        hooks=hooks,
        world=world,
    )
    return world.from_main(
        lambda: _finish(
            app, model_config, train_config, data, (train, test, val), held_out, result, log
        )
    )


def _finish(
    app: AppContext,
    model_config: EncoderConfig,
    train_config: EncoderTrainConfig,
    data: LesionCropDataset,
    parts: tuple[list[LesionSample], list[LesionSample], list[LesionSample]],
    held_out: str,
    result: EncoderTrainResult,
    log: Callable[[str], None],
) -> EncoderTrainOutcome:
    """Rank 0, after training: score the held-out part, calibrate on val, register."""
    train, test, val = parts
    log(f"scoring on {len(test)} images of the {held_out}, calibrating on {len(val)}")
    scores: EncoderScores | None = None
    if test:
        test_set = data.subset(range(len(train), len(train) + len(test)), augment=False)
        gallery = data.subset(range(len(train)), augment=False)
        scores = evaluate_fold(result.model, test_set, gallery).metrics()
    metrics = EncoderVersionMetrics(
        method=train_config.method,
        held_out=held_out,
        n_train_images=len({s.image_id for s in train}),
        n_train_lesions=len({s.lesion_key for s in train}),
        losses=tuple(result.losses),
        train_seconds=round(result.seconds, 1),
        train=train_config.model_dump(mode="json"),
        scores=scores,
    )
    calibrator = _calibrate(
        app, result.model, data.subset(range(len(data) - len(val), len(data)), augment=False), val
    )
    version_id = _register(app, result.model, manifest_hash(train), metrics, calibrator)
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    promoted = registry.active(ENCODER_KIND) is None
    if promoted:
        registry.promote(version_id, actor="labeler encoder train", reason="first encoder")
    return EncoderTrainOutcome(
        version_id=version_id,
        kind=ENCODER_KIND,
        promoted=promoted,
        method=train_config.method,
        backbone=model_config.backbone,
        epochs=train_config.epochs,
        held_out=held_out,
        n_train_images=metrics.n_train_images,
        n_train_lesions=metrics.n_train_lesions,
        n_test_images=len(test),
        losses=result.losses,
        metrics=metrics,
        seconds=result.seconds,
        calibrated_on=calibrator.n_fit if calibrator is not None else 0,
        threshold=calibrator.threshold if calibrator is not None else None,
    )


def _register(
    app: AppContext,
    model: LesionEncoder,
    manifest: str,
    metrics: EncoderVersionMetrics,
    calibrator: Calibrator | None,
) -> str:
    """The version's config is the EncoderConfig (what load_encoder reads); the training
    recipe is in the metrics, which encoder.json's notes repeat. The grader's calibrator is
    sealed with the weights (calibration.json)."""
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    with registry.staging(ENCODER_KIND) as staged:
        save_encoder(model, staged, notes={"metrics": metrics.model_dump(mode="json")})
        if calibrator is not None:
            calibrator.save(staged)
        info = registry.register(
            staged,
            kind=ENCODER_KIND,
            label_space=list(LABEL_SPACE),
            config=model.config.model_copy(update={"backbone_weights": None}).model_dump(
                mode="json"
            ),
            data_manifest_sha256=manifest,
            metrics=metrics,
        )
    return info.id
