"""DICOM import: no identifier reaches the db, PNG or logs; one patient's views stay together."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.settings import Settings
from db.models import Image, Patient
from labeler.cli import app
from labeler.importing.dicom import deidentify
from labeler.importing.pipeline import run_import
from tests.labeler.dicom_factory import Identity, make_dicom

JANE = Identity()
JOHN = Identity(name="ROE^JOHN", patient_id="MRN-7770999", birth_date="19550505")


def _db_bytes(settings: Settings) -> bytes:
    db = settings.home / "labeler.db"
    return b"".join(p.read_bytes() for p in db.parent.glob("labeler.db*"))


def _db_dump(settings: Settings) -> str:
    """Every stored value as SQL text: a short name is searched here, not in the raw pages."""
    with closing(sqlite3.connect(settings.home / "labeler.db")) as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.sqlite_only  # searches the SQLite file's raw pages
def test_no_identifier_reaches_db_png_or_logs(
    data_root: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    folder = data_root / "export"
    folder.mkdir()
    secrets = make_dicom(folder / "IM0001.dcm", JANE)
    secrets += make_dicom(folder / "IM0002", JANE, burned_in="NO")  # no suffix: found by preamble
    caplog.set_level(logging.DEBUG)

    result = CliRunner().invoke(app, ["-v", "import", str(folder), "--json"])

    assert result.exit_code == 0, result.output
    haystacks = {
        "db": _db_bytes(settings),
        "logs": caplog.text.encode(),
        "cli output": result.output.encode() + (result.stderr_bytes or b""),
    }
    for png in (settings.home / "images").rglob("*.png"):
        haystacks[f"png {png.name}"] = png.read_bytes()
    haystacks["db rows"] = _db_dump(settings).encode()
    assert len(haystacks) == 6
    for where, data in haystacks.items():
        for secret in secrets:
            if where == "db" and len(secret) < 6:
                continue  # 3 bytes such as b"DOE" turn up by chance in binary pages: see db rows
            assert secret.encode() not in data, f"{secret!r} leaked into {where}"
    assert '"deidentified": 2' in result.output
    assert '"yes": 1' in result.output and '"no": 1' in result.output


def test_views_of_one_patient_stay_together(
    data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    folder = data_root / "views"
    folder.mkdir()
    make_dicom(folder / "a.dcm", JANE)
    make_dicom(folder / "b.dcm", JANE, rows=50)
    make_dicom(folder / "c.dcm", JOHN)
    summary = run_import(folder, dataset="folder", settings=settings, sessions=sessions)
    assert summary.added == 3 and summary.errors == []
    with sessions() as s:
        images = s.scalars(select(Image).order_by(Image.id)).all()
        keys = [s.get_one(Patient, i.patient_id).key for i in images]
    assert keys[0] == keys[1] != keys[2]
    assert all(k.startswith("pt-") and "MRN" not in k for k in keys)
    assert images[0].split == images[1].split  # one patient, one split
    assert images[0].view == "left" and images[0].device == "Acme Medical"
    assert images[0].burned_in_annotation is True


def test_pixels_are_windowed_to_8bit_and_monochrome1_is_inverted(
    data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    folder = data_root / "pixels"
    folder.mkdir()
    make_dicom(folder / "m2.dcm", JANE)
    make_dicom(folder / "m1.dcm", JOHN, photometric="MONOCHROME1")
    run_import(folder, dataset="folder", settings=settings, sessions=sessions)
    with sessions() as s:
        pngs = {i.patient_id: settings.home / i.png_path for i in s.scalars(select(Image))}
    arrays = [np.asarray(PILImage.open(p)) for p in pngs.values()]
    for arr in arrays:
        assert arr.dtype == np.uint8 and arr.shape == (48, 64)
        assert arr.min() == 0 and arr.max() == 255  # 12-bit range spread over 8 bits
    assert np.array_equal(arrays[0], 255 - arrays[1])


@pytest.mark.filterwarnings("error")
def test_deidentify_applies_the_basic_profile(tmp_path: Path) -> None:
    secrets = make_dicom(tmp_path / "x.dcm", JANE)
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    sop_class = str(ds.SOPClassUID)
    deidentify(ds, salt=b"salt")
    values = [str(e.value) for e in ds.iterall()] + [str(e.value) for e in ds.file_meta]
    for secret in secrets:
        assert not any(secret in v for v in values), secret
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert str(ds.SOPClassUID) == sop_class  # class UIDs are not identifiers
    assert str(ds.SOPInstanceUID).startswith("2.25.")
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert not any(e.tag.is_private for e in ds.iterall())
    assert "PatientAge" not in ds and ds.PatientID in ("", None)
