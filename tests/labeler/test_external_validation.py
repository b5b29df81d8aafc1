"""External validation as a user runs it (issue 14): a second dataset imported for testing only
(`import --split test`), never trained on, scored alone (`evaluate --dataset D --split all`)
next to its radiologists' own BI-RADS, and counted per dataset by `status`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import register_random_detector
from core.birads import Birads
from core.settings import Settings
from db.models import Evaluation, Image, LabelStatus, Split
from db.queries import labels as label_queries
from labeler.cli import app
from labeler.jobs.encoder import split_samples
from labeler.jobs.samples import training_set
from ml_backend.encoder.data import LesionSample

runner = CliRunner()
BREAST = "breast-lesions-usg"


def _run(args: list[str], *, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.output, result.exception)
    return json.loads(result.stdout) if code == 0 else result


def _splits(sessions: sessionmaker[Session], dataset: str) -> dict[int, Split]:
    with sessions() as s:
        rows = s.execute(select(Image.id, Image.split).where(Image.dataset == dataset)).all()
    return {int(i): split for i, split in rows}


def test_import_split_test_pins_new_images_and_says_which_kept_their_split(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path, breast_dir: Path
) -> None:
    external = _run(["import", str(breast_dir), "--dataset", BREAST, "--split", "test"])
    assert external["added"] == 26 and external["splits"] == {"test": 26}
    assert external["split_requested"] == "test" and external["kept_earlier_split"] == {}
    assert set(_splits(sessions, BREAST).values()) == {Split.TEST}

    by_fold = _run(["import", str(busbra_dir), "--dataset", "busbra"])
    assert set(by_fold["splits"]) == {"train", "val", "test"}
    before = _splits(sessions, "busbra")
    again = runner.invoke(
        app, ["import", str(busbra_dir), "--dataset", "busbra", "--split", "test"]
    )
    assert again.exit_code == 0, again.output
    moved = sum(1 for s in before.values() if s is not Split.TEST)
    assert f"{moved} images already stored kept their earlier split" in again.stdout
    assert _splits(sessions, "busbra") == before  # nothing moved
    data = _run(["import", str(busbra_dir), "--dataset", "busbra", "--split", "test"])
    assert data["already_present"] == 62
    assert data["kept_earlier_split"] == {
        "train": by_fold["splits"]["train"],
        "val": by_fold["splits"]["val"],
    }


def test_a_test_split_image_accepted_by_readers_never_trains(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path, breast_dir: Path
) -> None:
    _run(["import", str(breast_dir), "--dataset", BREAST, "--split", "test"])
    _run(["import", str(busbra_dir), "--dataset", "busbra"])
    external = sorted(_splits(sessions, BREAST))
    train_image = next(i for i, s in _splits(sessions, "busbra").items() if s is Split.TRAIN)
    with sessions.begin() as s:
        for image_id in (external[0], train_image):  # e.g. pushed by hand, or a split changed
            label_queries.upsert_label(
                s,
                image_id=image_id,
                round=1,
                status=LabelStatus.ACCEPTED,
                boxes=[],
                birads=Birads.B2,
                model_version_id=None,
            )
    with sessions() as s:
        trained = {im.image_id: im for im in training_set(s, include_reference=True)}
    assert trained[train_image].image_category is Birads.B2  # the readers' label trains
    assert not set(external) & set(trained)
    assert {im.split for im in trained.values()} == {Split.TRAIN}


def test_evaluate_one_dataset_whole_with_the_radiologists_baseline(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path, breast_dir: Path
) -> None:
    _run(["import", str(busbra_dir), "--dataset", "busbra"])
    _run(["import", str(breast_dir), "--dataset", BREAST, "--split", "test"])
    version = register_random_detector(settings, sessions)

    unknown = _run(["evaluate", "--dataset", "hospital-b"], code=2)
    line = unknown.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "unknown dataset 'hospital-b'" in line and f"{BREAST}, busbra" in line  # sorted

    result = _run(["evaluate", "--dataset", BREAST, "--split", "all"])
    assert (result["dataset"], result["split"]) == (BREAST, "all")
    assert result["images_by_split"] == {"test": 26}
    metrics = result["metrics"]
    assert metrics["n_images"] == 26
    base = metrics["reader_baseline"]
    assert (base["n_images"], base["n_malignant"]) == (26, 7)  # 15 benign, 4 normal
    assert base["n_images"] == metrics["screening"]["n_with_pathology"]  # the model's images
    assert base["plain_4_left_out"] == 0  # BrEaST uses 4A/4B/4C
    assert base["at_4"]["sen"]["total"] == 7 and base["at_4b"]["spe"]["total"] == 19
    assert 0.5 < base["auc"] <= 1.0
    with sessions() as s:
        stored = s.scalars(select(Evaluation).where(Evaluation.model_version_id == version)).one()
    assert (stored.dataset, stored.split) == (BREAST, "all")
    assert stored.metrics.reader_baseline is not None
    assert stored.metrics.reader_baseline.auc == base["auc"]

    text = runner.invoke(app, ["evaluate", "--dataset", "busbra", "--split", "all"])
    assert text.exit_code == 0, text.output
    assert "on busbra / all (62 images" in text.stdout
    assert "radiologists' BI-RADS: AUC" in text.stdout
    assert "train-split images are included" in text.stdout


def test_status_counts_splits_per_dataset(
    settings: Settings, busbra_dir: Path, breast_dir: Path
) -> None:
    _run(["import", str(busbra_dir), "--dataset", "busbra"])
    _run(["import", str(breast_dir), "--dataset", BREAST, "--split", "test"])
    status = _run(["status"])
    per_dataset = status["splits_by_dataset"]
    assert per_dataset[BREAST] == {"test": 26}
    assert sum(per_dataset["busbra"].values()) == 62 and set(per_dataset["busbra"]) == {
        "train",
        "val",
        "test",
    }
    text = runner.invoke(app, ["status"]).stdout
    assert f"  {BREAST}: test 26" in text.splitlines()


def test_encoder_fold_runs_never_train_on_an_external_test_set() -> None:
    def lesion(n: int, fold: int, split: str) -> LesionSample:
        return LesionSample(
            n, f"{n}.png", (0, 0, 5, 5), f"l{n}", f"p{n}", fold, 0, None, None, split
        )

    by_fold_test, train, external = (
        lesion(1, 1, "test"),
        lesion(2, 3, "train"),
        lesion(3, 4, "test"),
    )
    held = lesion(4, 2, "val")
    trained, held_out, name = split_samples(
        [by_fold_test, train, external, held], fold=2, test_fold=1
    )
    assert name == "fold 2" and held_out == [held]
    assert trained == [by_fold_test, train]  # the test fold takes part in CV; `--split test` not


def test_a_pinned_image_whose_patient_has_other_views_elsewhere_is_reported(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path
) -> None:
    right = busbra_dir / "Images" / "bus_0001-r.png"  # fold 3: its left view goes to train
    aside = right.rename(busbra_dir.parent / "aside.png")
    first = runner.invoke(app, ["import", str(busbra_dir), "--dataset", "busbra", "--json"])
    assert first.exit_code == 1 and json.loads(first.stdout)["added"] == 61
    aside.rename(right)
    out = runner.invoke(app, ["import", str(busbra_dir), "--dataset", "busbra", "--split", "test"])
    assert out.exit_code == 0, out.output
    assert "1 new image in test of patients with images in another split" in out.stdout
    with sessions() as s:
        split = s.scalar(select(Image.split).where(Image.source_id == "bus_0001-r"))
    assert split is Split.TEST
