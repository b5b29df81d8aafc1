"""Burned-in PHI at import: DICOMs flagged BurnedInAnnotation=YES are held back, text in the
pixels is found (Tesseract) and reported, never stored as words, and blacked out on request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.settings import Settings
from db.models import Event, Image
from db.queries import phi as phi_queries
from labeler.cli import app
from labeler.importing.ocr import find_engine
from labeler.importing.pipeline import run_import
from tests.conftest import BUNDLED
from tests.labeler.dicom_factory import Identity, make_dicom

runner = CliRunner()
WORDS = "MARIA SILVA 66 ANOS"


@pytest.fixture
def ocr_on(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    engine = find_engine("auto")
    assert engine is not None, "OCR tests need Tesseract's data: scripts/setup.sh --tests"
    monkeypatch.setenv("LABELER_OCR", "auto")
    settings.ocr = "auto"
    return settings


def grainy_frame_with_text(path: Path) -> tuple[int, int, int, int]:
    """A speckled 480x360 frame with a name and an age burned in; returns the text's box."""
    rng = np.random.default_rng(0)
    frame = PILImage.fromarray(rng.normal(60, 20, (360, 480)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(frame)
    font = ImageFont.load_default(size=28)  # Pillow's own font: no system fonts needed
    draw.text((30, 280), WORDS, fill=235, font=font)
    frame.save(path)
    x0, y0, x1, y1 = draw.textbbox((30, 280), WORDS, font=font)
    return int(x0), int(y0), int(x1), int(y1)


def _stored(settings: Settings, sessions: sessionmaker[Session]) -> list[Image]:
    with sessions() as s:
        return list(s.scalars(select(Image).order_by(Image.id)))


def test_text_is_found_redacted_and_its_words_never_stored(
    ocr_on: Settings, data_root: Path, sessions: sessionmaker[Session]
) -> None:
    folder = data_root / "frames"
    folder.mkdir()
    x0, y0, x1, y1 = grainy_frame_with_text(folder / "a.png")
    PILImage.new("L", (200, 150), 40).save(folder / "blank.png")

    summary = run_import(
        folder, dataset="folder", settings=ocr_on, sessions=sessions, redact_text=True
    )

    assert summary.added == 2 and summary.errors == []
    tally = summary.to_dict()["pixel_text"]
    assert tally["engine"].startswith("tesseract") and tally["checked"] == 2
    assert tally["found"] == 1 and tally["redacted"] == 1
    assert tally["images"][0]["where"] == "frames/a.png"
    framed, blank = sorted(_stored(ocr_on, sessions), key=lambda i: i.width, reverse=True)
    assert blank.pixel_text is not None and blank.pixel_text.checked and not blank.pixel_text.found
    text = framed.pixel_text
    assert text is not None and text.redacted and text.engine == tally["engine"]
    rx0 = min(r[0] for r in text.regions)
    ry0 = min(r[1] for r in text.regions)
    rx1 = max(r[2] for r in text.regions)
    ry1 = max(r[3] for r in text.regions)
    assert rx0 <= x0 + 4 and ry0 <= y0 + 4 and rx1 >= x1 - 4 and ry1 >= y1 - 4
    png = np.asarray(PILImage.open(ocr_on.home / framed.png_path))
    for rx0, ry0, rx1, ry1 in text.regions:
        assert not png[ry0:ry1, rx0:rx1].any()  # black where the text was
    assert png[:200].any()  # the rest of the frame is kept
    db_files = [p for p in ocr_on.home.glob("labeler.db*") if p.is_file()]
    stored = b"".join(p.read_bytes() for p in db_files) + json.dumps(summary.to_dict()).encode()
    for word in ("MARIA", "SILVA", "ANOS"):  # (digits occur in any file)
        assert word.encode() not in stored


def test_text_is_reported_not_redacted_by_default_and_nothing_is_held(
    ocr_on: Settings, data_root: Path, sessions: sessionmaker[Session]
) -> None:
    folder = data_root / "frames"
    folder.mkdir()
    grainy_frame_with_text(folder / "a.png")
    before = np.asarray(PILImage.open(folder / "a.png"))

    summary = run_import(folder, dataset="folder", settings=ocr_on, sessions=sessions)

    (image,) = _stored(ocr_on, sessions)
    assert image.pixel_text is not None and image.pixel_text.found
    assert not image.pixel_text.redacted and image.held_reason is None
    assert np.array_equal(np.asarray(PILImage.open(ocr_on.home / image.png_path)), before)
    assert any(
        "text in the pixels" in line and "found in 1 of 1" in line for line in summary.lines()
    )
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["pixel_text"] == {"found": 1, "redacted": 0, "none_found": 0, "not_checked": 0}


def test_the_bundled_ultrasound_age_is_found(
    ocr_on: Settings,
    data_root: Path,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bus_0004-l shows "66 ANOS" under the lesion."""
    folder = data_root / "us"
    folder.mkdir()
    source = BUNDLED / "busbra_mini" / "Images" / "bus_0004-l.png"
    (folder / "x.png").write_bytes(source.read_bytes())
    from labeler.importing import ocr

    monkeypatch.delenv("OMP_THREAD_LIMIT", raising=False)
    ocr._api.cache_clear()  # load the engine again in this test
    summary = run_import(folder, dataset="folder", settings=ocr_on, sessions=sessions)
    assert summary.pixel_text.checked == 1 and len(summary.pixel_text.found) == 1
    # Tesseract's one-thread limit must not leak: torch here and every child would inherit it
    # (a retrain's trainer ran 20x slower after an in-process import).
    assert "OMP_THREAD_LIMIT" not in os.environ


def test_without_an_engine_the_summary_says_text_was_not_checked(
    settings: Settings, data_root: Path, sessions: sessionmaker[Session]
) -> None:
    folder = data_root / "frames"
    folder.mkdir()
    grainy_frame_with_text(folder / "a.png")
    summary = run_import(folder, dataset="folder", settings=settings, sessions=sessions)
    assert summary.pixel_text.not_checked == 1 and summary.pixel_text.engine is None
    assert any("not checked for 1 image " in line for line in summary.lines())
    (image,) = _stored(settings, sessions)
    assert image.pixel_text is not None and not image.pixel_text.checked
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["pixel_text"]["not_checked"] == 1


def test_burned_in_dicom_is_held_until_a_person_releases_it(
    settings: Settings,
    data_root: Path,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = data_root / "exports"
    folder.mkdir()
    make_dicom(folder / "flagged.dcm", Identity(), burned_in="YES")
    make_dicom(folder / "clean.dcm", Identity(patient_id="MRN-2"), burned_in="NO")

    result = runner.invoke(app, ["import", str(folder), "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["held"]["count"] == 1
    (held_id,) = data["held"]["image_ids"]
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["held"] == 1
    listed = json.loads(runner.invoke(app, ["images", "held", "--json"]).stdout)
    assert [h["image_id"] for h in listed["held"]] == [held_id]

    monkeypatch.setenv("USER", "dr-reviewer")
    released = runner.invoke(app, ["images", "release", str(held_id), "--json"])
    assert released.exit_code == 0, released.output
    assert json.loads(released.stdout)["released"] is True
    with sessions() as s:
        image = s.get(Image, held_id)
        assert image is not None and image.held_reason is None
        event = s.scalars(select(Event).where(Event.action == "image release")).one()
        assert event.actor == "dr-reviewer" and event.subject == f"image:{held_id}"
        assert "MRN" not in json.dumps(event.detail)
        assert phi_queries.phi_counts(s).held == 0
    again = runner.invoke(app, ["images", "release", str(held_id)])
    assert again.exit_code == 0 and "was not held" in again.output
    unknown = runner.invoke(app, ["images", "release", "99999"])
    assert unknown.exit_code == 2 and "no image with id 99999" in unknown.output


def test_an_engine_failure_is_a_warning_and_the_image_is_still_imported(
    ocr_on: Settings,
    data_root: Path,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labeler.importing import ocr

    def broken() -> None:
        raise RuntimeError("cannot load the language data")

    monkeypatch.setattr(ocr, "_api", broken)
    grainy_frame_with_text(data_root / "a.png")
    summary = run_import(data_root, dataset="folder", settings=ocr_on, sessions=sessions)
    assert summary.added == 1 and summary.errors == []
    assert summary.pixel_text.not_checked == 1
    assert any("not checked: the OCR engine failed" in w.message for w in summary.warnings)
