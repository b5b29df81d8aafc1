"""`labeler encoder train` and the db -> LesionSample rows, on the bundled BUS-BRA sample."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import register_random_detector
from core.birads import Birads
from core.settings import Settings
from db.engine import make_engine, make_session_factory
from db.models import Label, LabelStatus, Prediction, ReferenceLabel
from db.schemas import BoxRecord
from labeler.cli import app
from labeler.jobs.encoder import validation_samples
from labeler.jobs.lesions import accepted_lesions, lesion_samples, reference_lesions
from ml_backend.encoder.checkpoint import load_encoder
from ml_backend.prelabel.calibration import Calibrator
from tests.conftest import BUNDLED, copy_sample, isolated_env

runner = CliRunner()
FAST = ["--epochs", "1", "--crop-size", "64", "--views-per-lesion", "2"]


@dataclass(frozen=True)
class Imported:
    home: Path
    sessions: sessionmaker[Session]
    first: dict[str, Any]  # `encoder train --json` on the test split


def _invoke(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    base = tmp_path_factory.mktemp("encoder-cli")
    root = base / "root"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in isolated_env(base).items():
            mp.setenv(key, value)
        _invoke(["import", str(copy_sample("busbra_mini", root)), "--dataset", "busbra"])
        first = json.loads(_invoke(["encoder", "train", *FAST, "--json"]).stdout)
        engine = make_engine(f"sqlite:///{base / 'home' / 'labeler.db'}")
        yield Imported(base / "home", make_session_factory(engine), first)
        engine.dispose()


def _csv_rows() -> dict[str, dict[str, str]]:
    with (BUNDLED / "busbra_mini" / "annotations_derived.csv").open(newline="") as f:
        return {row["image_id"]: row for row in csv.DictReader(f)}


def test_reference_lesions_keep_views_patients_and_official_folds(imported: Imported) -> None:
    rows = _csv_rows()
    with imported.sessions() as session:
        samples = reference_lesions(session)
    assert len(samples) == 62 and {s.source for s in samples} == {"reference"}
    by_lesion: dict[str, set[str]] = {}
    for s in samples:
        by_lesion.setdefault(s.lesion_key, set()).add(s.patient_key)
    assert len(by_lesion) == len({r["lesion_id"] for r in rows.values()})
    assert all(len(patients) == 1 for patients in by_lesion.values())
    malignant = sum(r["pathology"] == "malignant" for r in rows.values())
    assert sum(s.pathology == 1 for s in samples) == malignant
    assert sum(s.pathology == 0 for s in samples) == 62 - malignant
    assert sorted(s.fold for s in samples) == sorted(int(r["fold5"]) for r in rows.values())
    assert {s.view for s in samples} >= {"dual_left", "dual_right"}


def test_accepted_labels_add_one_lesion_per_box_without_pathology(imported: Imported) -> None:
    with imported.sessions() as session:
        image_id = reference_lesions(session)[0].image_id
        session.query(ReferenceLabel).filter_by(image_id=image_id).delete()
        boxes = [
            BoxRecord(xyxy=(10, 10, 40, 40), birads=Birads.B3),
            BoxRecord(xyxy=(50, 50, 90, 80), birads=Birads.B4A),
            BoxRecord(xyxy=(1, 1, 5, 5), kind="other"),
        ]
        session.add(
            Label(
                image_id=image_id,
                status=LabelStatus.ACCEPTED,
                boxes=boxes,
                birads=Birads.B4A,
                decided_at=datetime.now(UTC),
            )
        )
        session.flush()
        accepted = accepted_lesions(session)
        combined = lesion_samples(session)
        session.rollback()
    assert [s.birads for s in accepted] == [Birads.B3, Birads.B4A]
    assert len({s.lesion_key for s in accepted}) == 2  # two boxes: no shared lesion key
    assert all(s.source == "accepted" and s.pathology is None for s in accepted)
    assert len(combined) == 61 + 2


def test_train_registers_and_promotes_an_encoder_with_held_out_metrics(
    imported: Imported,
) -> None:
    out = imported.first
    assert (out["kind"], out["promoted"], out["held_out"]) == ("encoder", True, "test split")
    assert (out["n_train_images"], out["n_test_images"]) == (40, 14)
    metrics, scores = out["metrics"], out["metrics"]["scores"]
    assert 0.0 <= scores["auc"] <= 1.0 and scores["n_images"] == 14
    assert scores["retrieval"]["same-patient"]["precision_at_1"] == 1.0  # BUS-BRA: 1 lesion
    assert metrics["train"]["method"] == "lr" and len(out["losses"]) == 1
    assert (metrics["kind"], metrics["n_train_images"]) == ("encoder", 40)
    folder = imported.home / "models" / out["version_id"]
    assert load_encoder(folder).config.crop_size == 64
    listed = json.loads(_invoke(["models", "list", "--json"]).stdout)["versions"]
    assert [(v["kind"], v["active"]) for v in listed if v["id"] == out["version_id"]] == [
        ("encoder", True)
    ]


def test_the_encoder_is_calibrated_on_the_validation_lesions(imported: Imported) -> None:
    with imported.sessions() as session:
        val = validation_samples(reference_lesions(session))
    assert len(val) == 8 and {v.pathology for v in val} == {0, 1}  # the sample's fold 2
    calibrator = Calibrator.load(imported.home / "models" / imported.first["version_id"])
    assert calibrator is not None and (calibrator.grader, calibrator.n_fit) == ("encoder", 8)
    assert calibrator.target_sensitivity == 0.95  # settings.target_sensitivity's default
    assert calibrator.validation is not None and calibrator.validation.sen is not None
    assert calibrator.validation.sen.value >= 0.95  # the threshold reaches it where it was fit
    cuts = calibrator.birads_cuts  # the BI-RADS head's cut points, on the same lesions
    assert cuts is not None and cuts.n_fit == 8
    assert list(cuts.uppers) == sorted(cuts.uppers)
    out = imported.first
    assert (out["calibrated_on"], out["threshold"]) == (8, calibrator.threshold)
    assert load_encoder(imported.home / "models" / out["version_id"]).birads_head is not None


def test_a_fold_run_holds_the_fold_out_and_prints_no_patient_keys(imported: Imported) -> None:
    result = _invoke(["encoder", "train", *FAST, "--method", "baseline", "--fold", "1"])
    version = result.stdout.split()[0]
    assert version.startswith("encoder-") and "fold 1" in result.stdout
    assert "promoted" not in result.stdout  # the first encoder stays active
    assert "busbra_" not in result.output
    listed = json.loads(_invoke(["models", "list", "--kind", "encoder", "--json"]).stdout)
    trained = {v["id"]: v for v in listed["versions"]}[version]
    assert trained["metrics"]["n_train_images"] == 62 - 14 and not trained["active"]


def test_a_fold_without_images_is_refused(imported: Imported) -> None:
    result = runner.invoke(app, ["encoder", "train", *FAST, "--fold", "9"])
    assert result.exit_code == 2 and "fold 9 holds no labeled lesion" in result.output


def test_an_empty_database_is_refused_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("LABELER_DB_URL", "")
    result = runner.invoke(app, ["encoder", "train", *FAST])
    assert result.exit_code == 2 and "labeler import" in result.output


def test_predict_grades_every_box_with_the_active_encoder(imported: Imported) -> None:
    detector = register_random_detector(Settings(_env_file=None), imported.sessions)
    out = json.loads(_invoke(["predict", "--json"]).stdout)
    assert out["predicted"] == 62
    encoder = imported.first["version_id"]
    with imported.sessions() as session:
        rows = list(
            session.scalars(select(Prediction).where(Prediction.model_version_id == detector))
        )
    assert len(rows) == 62
    for row in rows:
        source = row.produced_by
        assert source is not None and (source.grader, source.grader_version) == ("encoder", encoder)
        assert source.calibrated and row.malignancy is not None and 0 <= row.malignancy <= 1
        assert all(b.malignancy is not None for b in row.boxes)
    assert {im["malignancy"] for im in out["images"]} == {r.malignancy for r in rows}
