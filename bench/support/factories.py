"""Builders for what the tests and benchmarks need: the sample under a data root, a registered
detector or encoder, stored pre-labels, a migrated database."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path

import torch
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from core.results import DetectorVersionMetrics, ValidationSummary
from core.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory
from db.queries import images as image_queries
from db.queries import predictions as prediction_queries
from db.schemas import BoxRecord
from labeler.importing.pipeline import run_import
from ml_backend.detector.config import DetectorConfig, load_config
from ml_backend.detector.frcnn import CONFIG, WEIGHTS, FasterRCNNDetector
from ml_backend.encoder.checkpoint import save_encoder
from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.model import LesionEncoder
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND, ENCODER_KIND

MANIFEST = "0" * 64


def val_metrics(map50: float) -> DetectorVersionMetrics:
    """A detector version's own record with only a validation mAP@0.5 (the models page shows it)."""
    return DetectorVersionMetrics(
        n_train_images=None,
        val=ValidationSummary(
            n_images=10,
            map50=map50,
            map50_95=None,
            lesion_recall50=None,
            fp_per_image=None,
            screening_acc=None,
        ),
    )


def register_detector(
    settings: Settings,
    sessions: sessionmaker[Session],
    detector: FasterRCNNDetector,
    *,
    kind: str = DETECTOR_KIND,
) -> str:
    """Register an untrained `detector` as a version of `kind` and make it active."""
    return _register_active(settings, sessions, kind, detector.config, detector.save)


def register_random_detector(settings: Settings, sessions: sessionmaker[Session]) -> str:
    """A random-init `tiny` detector, registered and active (instant; its boxes are noise)."""
    return register_detector(settings, sessions, FasterRCNNDetector(load_config("tiny")))


def register_opaque_detector(settings: Settings, sessions: sessionmaker[Session]) -> str:
    """A registered, active detector version whose weights are 256 KiB of seeded bytes: for
    tests of the registry's own work (checksums, export, import), where a real model's 110 MB
    would only cost compression time. It cannot be loaded."""
    config = load_config("tiny")

    def write(folder: Path) -> None:
        (folder / WEIGHTS).write_bytes(random.Random(0).randbytes(2**18))
        (folder / CONFIG).write_text(config.model_dump_json())

    return _register_active(settings, sessions, DETECTOR_KIND, config, write)


def _register_active(
    settings: Settings,
    sessions: sessionmaker[Session],
    kind: str,
    config: DetectorConfig,
    write: Callable[[Path], None],
) -> str:
    registry = ModelRegistry.for_settings(settings, sessions)
    with registry.staging(kind) as staged:
        write(staged)
        info = registry.register(
            staged,
            kind=kind,
            label_space=[c.value for c in config.categories],
            config=config.model_dump(mode="json"),
            data_manifest_sha256=MANIFEST,
        )
    registry.promote(info.id, actor="test", reason="fixture")
    return info.id


def register_encoder(
    settings: Settings, sessions: sessionmaker[Session], *, crop_size: int = 64, seed: int = 0
) -> str:
    """A seeded random-init ResNet-18 encoder on small crops, registered and active.

    Instant, and its embeddings are deterministic; they carry no learned similarity, so tests
    use it for plumbing (index, CLI, backend, dashboard), never for retrieval quality.
    """
    torch.manual_seed(seed)
    config = EncoderConfig(crop_size=crop_size)
    registry = ModelRegistry.for_settings(settings, sessions)
    with registry.staging(ENCODER_KIND) as staged:
        save_encoder(LesionEncoder(config), staged, notes={"method": "random init (test)"})
        info = registry.register(
            staged,
            kind=ENCODER_KIND,
            label_space=["benign", "malignant"],
            config=config.model_dump(mode="json"),
            data_manifest_sha256=MANIFEST,
        )
    registry.promote(info.id, actor="test", reason="fixture")
    return info.id


KNOWN_MALIGNANCY = {  # a P(malignant) inside each category's ACR range (prelabel.likelihood)
    Birads.B1: 0.0,
    Birads.B2: 0.0,
    Birads.B3: 0.01,
    Birads.B4: 0.3,
    Birads.B4A: 0.06,
    Birads.B4B: 0.3,
    Birads.B4C: 0.7,
    Birads.B5: 0.97,
}


def known_prelabel(
    width: int, height: int, birads: Birads = Birads.B4A
) -> prediction_queries.NewPrediction:
    """One confident box in the middle of the image, graded in its ACR likelihood range."""
    box = BoxRecord(
        xyxy=(0.25 * width, 0.3 * height, 0.6 * width, 0.7 * height),
        birads=birads,
        score=0.91,
        malignancy=KNOWN_MALIGNANCY[birads],
    )
    return prediction_queries.NewPrediction(
        image_id=0,
        boxes=(box,),
        image_birads=birads,
        uncertainty=0.09,
        malignancy=KNOWN_MALIGNANCY[birads],
    )


def add_prelabels(
    sessions: sessionmaker[Session], version: str, image_ids: list[int], birads: Birads
) -> None:
    with sessions.begin() as session:
        rows = []
        for image_id in image_ids:
            image = image_queries.image_by_id(session, image_id=image_id)
            assert image is not None
            p = known_prelabel(image.width, image.height, birads)
            rows.append(dataclasses.replace(p, image_id=image_id))
        prediction_queries.add_predictions(session, model_version_id=version, predictions=rows)


def migrated(settings: Settings) -> sessionmaker[Session]:
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    return make_session_factory(engine)


def import_sample(
    settings: Settings, sessions: sessionmaker[Session], folder: Path, dataset: str
) -> None:
    run_import(folder, dataset=dataset, settings=settings, sessions=sessions)
