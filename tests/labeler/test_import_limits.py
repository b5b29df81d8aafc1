"""Pixel bombs: an image whose header claims too many pixels is refused from the header alone,
fast and without decoding, as one per-file error; the rest of the batch is imported."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import pydicom
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.settings import Settings
from labeler.cli import app
from labeler.importing.convert import ConvertTask, convert
from labeler.importing.items import ImportProblem
from labeler.importing.pipeline import run_import
from tests.conftest import BUNDLED
from tests.labeler.dicom_factory import Identity, make_dicom

GOOD = BUNDLED / "busbra_mini" / "Images" / "bus_0001-l.png"
runner = CliRunner()


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_claiming(path: Path, width: int, height: int) -> None:
    """A small PNG whose header says width x height (8-bit gray); only its first row is data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def dicom_claiming(path: Path, rows: int, cols: int) -> None:
    make_dicom(path, Identity())
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, cols
    ds.save_as(path)


def _timed(task: ConvertTask) -> tuple[ImportProblem, float]:
    started = time.perf_counter()
    result = convert(task)
    elapsed = time.perf_counter() - started
    assert isinstance(result, ImportProblem), result
    return result, elapsed


def test_pixel_bombs_are_refused_from_the_header_in_well_under_a_second(
    data_root: Path, settings: Settings, tmp_path: Path
) -> None:
    big = data_root / "big.png"
    PILImage.new("L", (12000, 12000)).save(big, compress_level=9)  # a real, valid 12000x12000
    assert big.stat().st_size < 200_000
    huge = data_root / "huge.png"
    png_claiming(huge, 30000, 30000)
    cine = data_root / "cine.dcm"
    dicom_claiming(cine, 20000, 20000)
    for path, is_dicom, size in (
        (big, False, "12000x12000"),
        (huge, False, None),
        (cine, True, "20000x20000"),
    ):
        task = ConvertTask(path, tmp_path / "out.png", path.name, is_dicom, b"salt")
        problem, seconds = _timed(task)
        assert seconds < 0.5, (path.name, seconds)
        assert "LABELER_MAX_IMAGE_PIXELS" in problem.message and "not decoded" in problem.message
        assert size is None or size in problem.message
        assert not (tmp_path / "out.png").exists()


def test_the_limit_is_the_setting_and_the_rest_of_the_batch_is_imported(
    data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    folder = data_root / "mixed"
    folder.mkdir()
    (folder / "good.png").write_bytes(GOOD.read_bytes())
    png_claiming(folder / "bomb.png", 30000, 30000)
    PILImage.new("L", (400, 300)).save(folder / "wide.png")
    settings.max_image_pixels = 100_000  # 400x300 = 120,000 is over it too

    summary = run_import(folder, dataset="folder", settings=settings, sessions=sessions)

    assert summary.added == 1
    errors = {e.where: e.message for e in summary.errors}
    assert set(errors) == {"mixed/bomb.png", "mixed/wide.png"}
    assert "400x300" in errors["mixed/wide.png"] and "100,000" in errors["mixed/wide.png"]


def test_cli_exit_code_1_with_a_per_file_error(data_root: Path, settings: Settings) -> None:
    (data_root / "good.png").write_bytes(GOOD.read_bytes())
    png_claiming(data_root / "bomb.png", 30000, 30000)
    started = time.perf_counter()
    result = runner.invoke(app, ["import", str(data_root), "--json"])
    assert time.perf_counter() - started < 30
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["added"] == 1
    assert [e["where"] for e in data["errors"]] == ["bomb.png"]
