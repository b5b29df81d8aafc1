"""Migration 0007: model_versions.metrics becomes core.results' VersionMetrics, and back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from core.results import DetectorVersionMetrics, EncoderVersionMetrics
from core.settings import Settings
from db import migrate
from db.engine import make_engine
from db.models import ModelVersion

OLD_DETECTOR = {  # labeler train before 0007 (a validation split, no threshold)
    "val_n_images": 9,
    "val_map50": 0.4,
    "val_map50_95": 0.2,
    "val_lesion_recall50": 0.75,
    "val_fp_per_image": 1.5,
    "val_screening_acc": 0.6,
    "n_train_images": 57,
}
OLD_NO4 = {  # labeler train --exclude-birads 4, no validation images
    "birads4_threshold": 0.35,
    "birads4_threshold_from": "plain-4",
    "birads4_threshold_n": 6,
    "n_train_images": 40,
}
RETRIEVAL = {
    "map_at_10": 1.0,
    "precision_at_1": 1.0,
    "precision_at_10": 0.5,
    "n_queries": 4,
    "n_skipped": 0,
}
OLD_ENCODER = {  # labeler encoder train: held-out scores and the recipe, flat
    "auc": 0.8,
    "precision": 0.5,
    "f1": 0.6,
    "mcr": None,
    "acc": 0.7,
    "acc_ci": [0.4, 0.9],
    "sen": 0.5,
    "sen_ci": [0.1, 0.9],
    "spe": None,
    "spe_ci": None,
    "n_images": 14,
    "n_multiview_lesions": 2,
    "retrieval": {"all": RETRIEVAL, "same-patient": RETRIEVAL, "cross-patient": RETRIEVAL},
    "other_view": RETRIEVAL,
    "n_gallery": 40,
    "method": "lr",
    "held_out": "test split",
    "n_train_images": 40,
    "n_train_lesions": 30,
    "losses": [0.7],
    "train_seconds": 1.5,
    "train": {"method": "lr", "epochs": 1},
}
OLD_ENCODER_FOLD = {  # nothing held out to score: the recipe only
    k: OLD_ENCODER[k]
    for k in ("method", "held_out", "n_train_images", "n_train_lesions", "losses", "train")
} | {"train_seconds": 2.0}
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "d1": ("detector", OLD_DETECTOR),
    "d2": ("detector_no4", OLD_NO4),
    "d3": ("detector", {}),
    "e1": ("encoder", OLD_ENCODER),
    "e2": ("encoder", OLD_ENCODER_FOLD),
}


def _insert_old_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        for row_id, (kind, metrics) in ROWS.items():
            conn.execute(
                text(
                    "INSERT INTO model_versions (id, kind, path, label_space, config, "
                    "data_manifest_sha256, package_version, metrics, status, created_at) VALUES "
                    "(:id, :kind, 'models/x', '[]', '{}', :sha, '0.1', :m, 'registered', "
                    "'2026-11-01 00:00:00')"
                ),
                {"id": row_id, "kind": kind, "sha": "0" * 64, "m": json.dumps(metrics)},
            )


@pytest.mark.no_schema
def test_0007_types_version_metrics_and_downgrades_them_back(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine, "0006")
    _insert_old_rows(engine)
    migrate.upgrade(engine)
    with Session(engine) as session:
        typed = {v.id: v.metrics for v in session.scalars(select(ModelVersion))}

    d1, d2, e1, e2 = typed["d1"], typed["d2"], typed["e1"], typed["e2"]
    assert isinstance(d1, DetectorVersionMetrics) and isinstance(d2, DetectorVersionMetrics)
    assert d1.schema_version == 1 and d1.n_train_images == 57 and d1.birads4_threshold is None
    assert d1.val is not None and (d1.val.n_images, d1.val.map50, d1.val.screening_acc) == (
        9,
        0.4,
        0.6,
    )
    assert d2.val is None and d2.birads4_threshold is not None
    assert (d2.birads4_threshold.value, d2.birads4_threshold.chosen_from) == (0.35, "plain-4")
    assert d2.birads4_threshold.n_images == 6
    assert typed["d3"] is None  # registered without metrics
    assert isinstance(e1, EncoderVersionMetrics) and isinstance(e2, EncoderVersionMetrics)
    assert e1.scores is not None and e1.scores.acc_ci == (0.4, 0.9) and e1.scores.spe is None
    assert e1.scores.retrieval["same-patient"].precision_at_1 == 1.0
    assert (e1.method, e1.n_train_lesions, e1.losses, e1.train["epochs"]) == ("lr", 30, (0.7,), 1)
    assert e2.scores is None and e2.held_out == "test split" and e2.train_seconds == 2.0

    migrate.downgrade(engine, "0006")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, CAST(metrics AS TEXT) FROM model_versions")).all()
    assert {row_id: json.loads(m) for row_id, m in rows} == {
        row_id: metrics for row_id, (_, metrics) in ROWS.items()
    }
    engine.dispose()
