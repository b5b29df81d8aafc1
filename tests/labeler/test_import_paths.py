"""Paths in messages: relative to LABELER_DATA_ROOT, never absolute, never a DICOM's file name
(hospital exports name files after patients); nothing under LABELER_HOME is ever imported."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from labeler.cli import app
from tests.conftest import BUNDLED, copy_sample
from tests.labeler.dicom_factory import Identity, make_dicom

GOOD = BUNDLED / "busbra_mini" / "Images" / "bus_0001-l.png"
runner = CliRunner()


def test_dicom_file_names_and_absolute_paths_never_appear(
    data_root: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    folder = data_root / "exports"
    folder.mkdir()
    make_dicom(folder / "SILVA_MARIA_MRN555.dcm", Identity(), burned_in="YES")
    (folder / "SOUZA_ANA_MRN777.dcm").write_bytes(b"\0" * 300)  # broken: an error line
    (folder / "SANTOS_JOAO").write_bytes(b"\0" * 10)  # PACS style, no extension, broken
    (folder / "ok.png").write_bytes(GOOD.read_bytes())

    with caplog.at_level(logging.DEBUG):
        as_json = runner.invoke(app, ["import", str(folder), "--json"])
        again = runner.invoke(app, ["import", str(folder)])

    assert as_json.exit_code == 1, as_json.output
    data = json.loads(as_json.stdout)
    assert data["added"] == 2 and len(data["errors"]) == 2
    everything = as_json.output + again.output + caplog.text
    for secret in ("SILVA", "SOUZA", "SANTOS", "MRN", str(data_root), str(settings.home)):
        assert secret not in everything, secret
    wheres = {e["where"] for e in data["errors"]} | {w["where"] for w in data["warnings"]}
    assert all(w.startswith("exports/ <DICOM") for w in wheres), wheres
    assert any("sha256:" in w for w in wheres)


def test_refusals_quote_no_path(tmp_path: Path, data_root: Path, settings: Settings) -> None:
    outside = tmp_path / "Patient Maria Silva"
    outside.mkdir()
    refused = runner.invoke(app, ["import", str(outside), "--json"])
    assert refused.exit_code == 2 and "outside LABELER_DATA_ROOT" in refused.output
    assert "Maria" not in refused.output and str(data_root) not in refused.output
    missing = runner.invoke(app, ["import", str(data_root / "Joao Santos")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert "Joao" not in missing.output


def test_nothing_under_labeler_home_is_imported(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    home = data_root / "labeler-data"  # the default layout: home inside the data root
    monkeypatch.setenv("LABELER_HOME", str(home))
    assert runner.invoke(app, ["init"]).exit_code == 0
    (data_root / "ok.png").write_bytes(GOOD.read_bytes())
    (home / "stray.png").write_bytes(GOOD.read_bytes())

    whole = runner.invoke(app, ["import", str(data_root), "--json"])
    assert whole.exit_code == 0, whole.output
    data = json.loads(whole.stdout)
    assert data["added"] == 1
    assert any(w["where"] == "LABELER_HOME" for w in data["warnings"])

    inside = runner.invoke(app, ["import", str(home)])
    assert inside.exit_code == 2 and "inside LABELER_HOME" in inside.output

    busbra = copy_sample("busbra_mini", data_root)
    rows = list(csv.DictReader((busbra / "annotations_derived.csv").open()))
    rows[0]["image_path"] = "../labeler-data/labeler.db"
    with (busbra / "annotations_derived.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pointed = runner.invoke(app, ["import", str(busbra), "--dataset", "busbra", "--json"])
    errors = json.loads(pointed.stdout)["errors"]
    assert len(errors) == 1 and "inside LABELER_HOME" in errors[0]["message"]
