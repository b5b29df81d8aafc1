"""Bad input: a clear per-file error, and the rest of the batch is imported."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.queries import images as image_queries
from labeler.importing.paths import OutsideDataRootError
from labeler.importing.pipeline import run_import
from tests.conftest import BUNDLED

GOOD = BUNDLED / "busbra_mini" / "Images" / "bus_0001-l.png"


def test_truncated_foreign_and_escaping_files_do_not_stop_the_batch(
    tmp_path: Path, data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    folder = data_root / "mixed"
    folder.mkdir()
    (folder / "good.png").write_bytes(GOOD.read_bytes())
    (folder / "truncated.png").write_bytes(GOOD.read_bytes()[:4000])
    (folder / "notes.jpg").write_text("not an image")
    (folder / "broken.dcm").write_bytes(b"\0" * 200)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(GOOD.read_bytes())
    (folder / "escape.png").symlink_to(outside / "secret.png")

    summary = run_import(folder, dataset="folder", settings=settings, sessions=sessions)

    assert summary.added == 1 and summary.unlabeled == 1
    errors = {e.where: e.message for e in summary.errors}
    dicom = f"mixed/ <DICOM sha256:{hashlib.sha256(bytes(200)).hexdigest()[:8]}>"
    assert set(errors) == {"mixed/truncated.png", "mixed/notes.jpg", dicom, "mixed/escape.png"}
    assert "cannot decode image" in errors["mixed/truncated.png"]
    assert "truncated" in errors["mixed/truncated.png"]
    assert "outside LABELER_DATA_ROOT" in errors["mixed/escape.png"]
    assert "not a DICOM file" in errors[dicom]
    everything = json.dumps(summary.to_dict()) + json.dumps(summary.lines())
    assert "broken.dcm" not in everything and str(data_root) not in everything
    with sessions() as s:
        assert image_queries.image_counts(s).total == 1


def test_a_path_outside_the_data_root_is_refused_whole(
    tmp_path: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.png").write_bytes(GOOD.read_bytes())
    with pytest.raises(OutsideDataRootError, match="outside LABELER_DATA_ROOT"):
        run_import(elsewhere, dataset="folder", settings=settings, sessions=sessions)
    sneaky = settings.data_root / ".." / "elsewhere"
    with pytest.raises(OutsideDataRootError):
        run_import(sneaky, dataset="folder", settings=settings, sessions=sessions)


def test_bad_csv_rows_are_reported_and_the_rest_imported(
    busbra_dir: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    path = busbra_dir / "annotations_derived.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[3]["birads"] = "4d"
    rows[5]["image_path"] = "../../../etc/hostname"
    rows[7]["x1"] = "9999"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    summary = run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)

    assert summary.added == 59
    messages = [str(e) for e in summary.errors]
    assert len(messages) == 3
    assert any("line 5" in m and "unknown BI-RADS label '4d'" in m for m in messages)
    assert any("outside LABELER_DATA_ROOT" in m for m in messages)
    assert any("lies outside the" in m for m in messages)


def test_labels_drawn_on_another_size_are_refused(
    busbra_dir: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    path = busbra_dir / "annotations_derived.csv"
    text = path.read_text().splitlines()
    header, first = text[0].split(","), text[1].split(",")
    first[header.index("width")] = str(int(first[header.index("width")]) + 100)
    path.write_text("\n".join([text[0], ",".join(first)]) + "\n")

    summary = run_import(busbra_dir, dataset="busbra", settings=settings, sessions=sessions)

    assert summary.added == 0
    assert "labels were drawn on" in summary.errors[0].message


def test_jpeg_rgba_and_16bit_sources_become_8bit_pngs(
    data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    import numpy as np
    from PIL import Image as PILImage

    folder = data_root / "formats"
    folder.mkdir()
    gray = np.asarray(PILImage.open(GOOD))
    PILImage.fromarray(gray).save(folder / "a.jpg", quality=95)
    PILImage.fromarray(gray).convert("RGBA").save(folder / "b.png")
    PILImage.fromarray(gray.astype(np.uint16) * 256 + 7).save(folder / "c16.png")

    summary = run_import(folder, dataset="folder", settings=settings, sessions=sessions)

    assert summary.added == 3 and summary.errors == []
    with sessions() as s:
        rows = image_queries.image_counts(s)
    assert rows.total == 3
    for png in (settings.home / "images").rglob("*.png"):
        arr = np.asarray(PILImage.open(png))
        assert arr.dtype == np.uint8 and arr.ndim == 2 and arr.shape == gray.shape


def test_a_full_disk_leaves_no_temp_files_and_stops_the_batch(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import numpy as np
    from PIL import Image as PILImage

    from core.errors import DiskFullError
    from labeler.importing import rasters
    from labeler.importing.convert import ConvertTask, convert

    def full_disk(self: PILImage.Image, fp: Path, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"")  # what a full disk leaves: a zero-byte file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", full_disk)
    dest = tmp_path / "images" / "ab" / "x.png"
    with pytest.raises(OSError):
        rasters.write_png(np.zeros((4, 4), dtype=np.uint8), dest)
    assert list(dest.parent.iterdir()) == []
    task = ConvertTask(GOOD, dest, "good.png", False, b"salt")
    with pytest.raises(DiskFullError, match="no space left"):
        convert(task)
    assert list(dest.parent.iterdir()) == []


def test_temp_files_left_by_a_killed_import_are_swept(
    data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    stale = settings.images_dir / "ab" / ".abc.png.4242.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    (data_root / "good.png").write_bytes(GOOD.read_bytes())
    run_import(data_root, dataset="folder", settings=settings, sessions=sessions)
    assert not stale.exists()
