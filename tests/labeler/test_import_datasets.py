"""Importing the bundled real samples: counts, boxes and splits equal the dataset CSVs."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.birads import parse_birads
from core.settings import Settings
from db.models import Image, Patient
from db.queries import events as event_queries
from db.queries import images as image_queries
from labeler.importing import pipeline
from labeler.importing.convert import Converted, ConvertTask
from labeler.importing.convert import convert as real_convert
from labeler.importing.items import ImportProblem
from labeler.importing.pipeline import run_import


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _birads_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    return dict(Counter(parse_birads(r["birads"]).value for r in rows))


@pytest.mark.sqlite_only  # its process pool costs ~10 s a run; the CSV checks on PostgreSQL: below
def test_busbra_sample_matches_its_csv(
    busbra_dir: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    rows = _csv(busbra_dir / "annotations_derived.csv")
    settings.import_workers = 2  # the process pool (tests default to in-process conversion)
    summary = run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)

    assert summary.errors == []
    assert summary.images == summary.added == len(rows) == 62
    assert summary.to_dict()["birads"] == _birads_counts(rows)
    assert summary.to_dict()["pathology"] == dict(Counter(r["pathology"] for r in rows))
    by_id = {r["image_id"]: r for r in rows}
    with sessions() as s:
        pairs = image_queries.reference_labels(s, dataset="busbra")
        assert len(pairs) == 62
        for image, ref in pairs:
            row = by_id[image.source_id or ""]
            assert [b.xyxy for b in ref.boxes] == [
                tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            ]
            assert ref.birads == parse_birads(row["birads"]) == ref.boxes[0].birads
            assert (image.width, image.height) == (int(row["width"]), int(row["height"]))
            assert image.fold == int(row["fold5"])  # the official folds are kept
            assert image.view == row["view"]
        assert s.scalar(select(Patient.id).where(Patient.key == "busbra_0001")) is not None
        counts = image_queries.image_counts(s, dataset="busbra")
        assert counts.by_birads == _birads_counts(rows) and counts.total == 62
        assert counts.patients == len({r["patient_id"] for r in rows}) == 34
        assert counts.by_pathology == dict(Counter(r["pathology"] for r in rows))
        assert image_queries.image_counts(s, dataset="breast-lesions-usg").total == 0


def test_breast_lesions_sample_matches_its_csvs(
    breast_dir: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    rows = _csv(breast_dir / "images_derived.csv")
    box_rows = _csv(breast_dir / "boxes_derived.csv")
    summary = run_import(
        breast_dir, dataset="breast-lesions-usg", settings=settings, sessions=sessions
    )

    assert summary.errors == []
    assert summary.images == summary.added == len(rows) == 26
    assert summary.to_dict()["birads"] == _birads_counts(rows)
    assert {"1", "4A", "4B", "4C"} <= set(summary.to_dict()["birads"])
    expected: dict[str, Counter[tuple[tuple[float, ...], str]]] = defaultdict(Counter)
    for b in box_rows:
        xyxy = tuple(float(b[k]) for k in ("x0", "y0", "x1", "y1"))
        expected[b["image_id"]][(xyxy, "lesion" if b["kind"] == "tumor" else "other")] += 1
    with sessions() as s:
        for image, ref in image_queries.reference_labels(s, dataset="breast-lesions-usg"):
            got = Counter((b.xyxy, b.kind) for b in ref.boxes)
            assert got == expected.get(image.source_id or "", Counter())
            assert all(b.birads == ref.birads for b in ref.boxes if b.kind == "lesion")


def test_second_import_adds_nothing(
    busbra_dir: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)
    again = run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)
    assert (again.added, again.already_present, again.labels_added) == (0, 62, 0)
    assert again.images == 62 and again.to_dict()["birads"]["4"] == 22
    with sessions() as s:
        assert image_queries.image_counts(s).total == 62
        assert len(image_queries.reference_labels(s)) == 62
        assert event_queries.count_events(s, action="import") == 2


@pytest.fixture
def both_samples(
    busbra_dir: Path, breast_dir: Path, settings: Settings, sessions: sessionmaker[Session]
) -> list[Image]:
    """Both bundled samples imported; returns every image row."""
    run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)
    run_import(breast_dir, dataset="breast-lesions-usg", settings=settings, sessions=sessions)
    with sessions() as s:
        return list(s.scalars(select(Image)).all())


def test_splits_are_patient_disjoint(both_samples: list[Image], settings: Settings) -> None:
    images = both_samples
    splits_per_patient: dict[int, set[str]] = defaultdict(set)
    for image in images:
        splits_per_patient[image.patient_id].add(image.split.value)
        assert image.split.value == settings.split_for_fold(image.fold)
    assert all(len(splits) == 1 for splits in splits_per_patient.values())
    assert {s for splits in splits_per_patient.values() for s in splits} == {"train", "val", "test"}


@pytest.mark.sqlite_only  # a test of the PNGs, not of the rows
def test_pngs_are_8bit_lossless_and_carry_no_source_metadata(
    both_samples: list[Image], busbra_dir: Path, breast_dir: Path, settings: Settings
) -> None:
    images = both_samples
    sources = {
        **_sources(busbra_dir, "annotations_derived.csv"),
        **_sources(breast_dir, "images_derived.csv"),
    }
    for image in images:
        with PILImage.open(settings.home / image.png_path) as png:
            assert png.mode in ("L", "RGB") and png.mode == image.mode
            assert png.size == (image.width, image.height)
            assert png.info == {}  # BUS-BRA's Author/Copyright text and BrEaST's ICC are gone
            stored = np.asarray(png)
        with PILImage.open(sources[image.source_id or ""]) as src:
            original = np.asarray(src.convert("RGB" if png.mode == "RGB" else "L"))
        assert np.array_equal(stored, original)


def _sources(root: Path, name: str) -> dict[str, Path]:
    return {r["image_id"]: root / r["image_path"] for r in _csv(root / name)}


def test_an_interrupted_import_resumes_without_duplicates(
    busbra_dir: Path,
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.import_workers = 1
    settings.import_commit_every = 10
    calls = {"n": 0}

    def flaky(task: ConvertTask) -> Converted | ImportProblem:
        calls["n"] += 1
        if calls["n"] == 35:
            raise KeyboardInterrupt
        return real_convert(task)

    monkeypatch.setattr(pipeline, "convert", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)
    with sessions() as s:
        finished = image_queries.image_counts(s).total
    assert finished == 30  # three committed chunks of ten survive the interrupt

    monkeypatch.setattr(pipeline, "convert", real_convert)
    resumed = run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)
    assert (resumed.added, resumed.already_present) == (32, 30)
    with sessions() as s:
        assert image_queries.image_counts(s).total == 62
