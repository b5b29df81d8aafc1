"""A DICOM flagged BurnedInAnnotation=YES never becomes a Label Studio task until a person
releases it (`labeler images release`); then the next push sends it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import add_prelabels, register_random_detector
from core.birads import Birads
from core.settings import Settings
from db.models import Image, Split
from labeler.cli import app
from labeler.context import AppContext
from labeler.importing.pipeline import run_import
from labeler.studio.push import push
from tests.labeler.dicom_factory import Identity, make_dicom
from tests.labeler.studio.fake import PushStudio

runner = CliRunner()


def _pushed(app_ctx: AppContext, version: str) -> set[int]:
    studio = PushStudio()
    push(app_ctx, studio.as_studio(), 1, model_version=version)
    return {int(t["data"]["image_id"]) for t in studio.imported}


def test_held_image_is_pushed_only_after_release(
    settings: Settings,
    data_root: Path,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = data_root / "exports"
    folder.mkdir()
    for n in range(4):  # several patients, so at least one image lands outside the test split
        make_dicom(folder / f"f{n}.dcm", Identity(patient_id=f"MRN-{n}"), burned_in="YES")
        make_dicom(folder / f"c{n}.dcm", Identity(patient_id=f"MRN-{n}"), burned_in="NO")
    summary = run_import(folder, dataset="folder", settings=settings, sessions=sessions)
    assert len(summary.held) == 4
    with sessions.begin() as s:  # the test split is never pushed: keep every image reviewable
        for image in s.scalars(select(Image)):
            image.split = Split.TRAIN
        ids = list(s.scalars(select(Image.id)))
    version = register_random_detector(settings, sessions)
    add_prelabels(sessions, version, ids, Birads.B3)
    app_ctx = AppContext(settings)

    first = _pushed(app_ctx, version)
    assert first == set(ids) - set(summary.held)

    monkeypatch.setenv("USER", "dr-reviewer")
    released = summary.held[0]
    assert runner.invoke(app, ["images", "release", str(released)]).exit_code == 0
    second = _pushed(app_ctx, version)
    assert released in second
    assert not (set(summary.held) - {released}) & second
