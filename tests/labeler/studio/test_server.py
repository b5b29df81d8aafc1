"""A new home's Label Studio database starts as a copy of the template setup.sh migrated."""

from __future__ import annotations

import stat
from pathlib import Path

from labeler.studio.server import MIGRATED, STUDIO_DB, seed_database


def _venv(tmp_path: Path, template: bytes | None) -> Path:
    executable = tmp_path / "venv-ls" / "bin" / "label-studio"
    executable.parent.mkdir(parents=True)
    executable.touch()
    if template is not None:
        (executable.parent.parent / MIGRATED).parent.mkdir(parents=True)
        (executable.parent.parent / MIGRATED).write_bytes(template)
    return executable


def test_a_new_home_gets_an_owner_only_copy_of_the_template(tmp_path: Path) -> None:
    data_dir = tmp_path / "home" / "studio"
    assert seed_database(_venv(tmp_path, b"migrated"), data_dir) is True
    copied = data_dir / STUDIO_DB
    assert copied.read_bytes() == b"migrated"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == [STUDIO_DB]  # no partial file left


def test_an_existing_database_is_never_replaced(tmp_path: Path) -> None:
    data_dir = tmp_path / "studio"
    data_dir.mkdir()
    (data_dir / STUDIO_DB).write_bytes(b"the readers' work")
    assert seed_database(_venv(tmp_path, b"migrated"), data_dir) is False
    assert (data_dir / STUDIO_DB).read_bytes() == b"the readers' work"


def test_without_a_template_label_studio_migrates_itself(tmp_path: Path) -> None:
    data_dir = tmp_path / "studio"
    assert seed_database(_venv(tmp_path, None), data_dir) is False
    assert not (data_dir / STUDIO_DB).exists()
