"""Two imports at once: the second waits for the first (one line on stderr), both answer valid
JSON, every image is stored exactly once; rows are written with INSERT ... ON CONFLICT, so a
writer that slips past the lock never fails on a duplicate."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from core.settings import Settings
from db.models import Image, Split
from db.queries import images as image_queries
from labeler.importing.exclusive import import_lock
from tests.conftest import BUNDLED

ROOT = Path(__file__).resolve().parents[2]


def _folder(data_root: Path, n: int) -> Path:
    folder = data_root / "batch"
    folder.mkdir()
    for src in sorted((BUNDLED / "busbra_mini" / "Images").glob("*.png"))[:n]:
        shutil.copy(src, folder / src.name)
    return folder


def _import(folder: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labeler.cli", "import", str(folder), "--json", *extra],
        cwd=ROOT,
        env=os.environ.copy(),  # the settings fixture exported LABELER_*
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows_match_pngs(settings: Settings, sessions: sessionmaker[Session], n: int) -> None:
    with sessions() as s:
        rows = list(s.scalars(select(Image)))
    assert len(rows) == n and len({r.sha256 for r in rows}) == n
    pngs = sorted(p.relative_to(settings.home) for p in settings.images_dir.rglob("*.png"))
    assert pngs == sorted(Path(r.png_path) for r in rows)
    assert not list(settings.images_dir.rglob("*.tmp"))


@pytest.mark.sqlite_only  # import.lock orders them, not the database; two CLI processes: slow
def test_two_imports_of_one_folder_at_once(
    data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    folder = _folder(data_root, 20)  # enough for the worker pool
    first, second = _import(folder), _import(folder)
    results = [p.communicate(timeout=300) for p in (first, second)]

    assert [p.returncode for p in (first, second)] == [0, 0], results
    data = [json.loads(out) for out, _ in results]
    assert sorted(d["added"] for d in data) == [0, 20]
    assert all(d["images"] == 20 and d["errors"] == [] for d in data)
    assert all("Traceback" not in err for _, err in results)
    _rows_match_pngs(settings, sessions, 20)


@pytest.mark.sqlite_only  # a test of import.lock, whatever the database
def test_a_second_import_says_it_waits_then_runs(
    data_root: Path, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    folder = _folder(data_root, 3)
    with import_lock(settings.home):
        proc = _import(folder)
        assert proc.stderr is not None
        said = _wait_for_line(proc, "another import is running", seconds=120)
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting while the lock is held
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, said + err
    assert json.loads(out)["added"] == 3
    assert f"(pid {os.getpid()}); waiting for it to finish" in said
    _rows_match_pngs(settings, sessions, 3)


def _wait_for_line(proc: subprocess.Popen[str], text: str, *, seconds: float) -> str:
    assert proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    seen = ""
    deadline = time.monotonic() + seconds
    while text not in seen and time.monotonic() < deadline and proc.poll() is None:
        if selector.select(timeout=0.5):
            seen += proc.stderr.readline()
    assert text in seen, seen
    return seen


def test_storing_an_image_twice_is_no_error(sessions: sessionmaker[Session]) -> None:
    """What a second writer does when the first stored the same pixels a moment before."""
    new = image_queries.NewImage(
        sha256="ab" * 32,
        patient_key="p1",
        patient_source="image",
        lesion_key="p1-l1",
        view=None,
        width=10,
        height=10,
        mode="L",
        dataset="folder",
        source_id=None,
        fold=3,
        split=Split.TRAIN,
        png_path="images/ab/x.png",
    )
    reference = image_queries.NewReference("folder", Birads.B3, None, None, ())
    outcomes = []
    for _ in range(2):
        with sessions.begin() as s:
            image, added = image_queries.put_image(s, new=new)
            label = image_queries.add_reference_label(s, image_id=image.id, reference=reference)
            outcomes.append((image.id, added, label is not None))
    assert outcomes == [(outcomes[0][0], True, True), (outcomes[0][0], False, False)]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1
