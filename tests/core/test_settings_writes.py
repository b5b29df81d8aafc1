"""Settings' own files (`.secrets.json`, `.id_salt`) on a full disk: whole or not at all, and no
temporary file left behind."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from core.settings import Settings
from tests.conftest import fill_disk


def test_a_secret_that_does_not_fit_keeps_the_old_file_and_no_temp(
    settings: Settings, small_disk: Callable[[Path, str], Path]
) -> None:
    home = small_disk(settings.home, "64k")
    first = settings.secret("studio_token")
    before = (home / ".secrets.json").read_bytes()
    fill_disk(home)
    with pytest.raises(OSError) as caught:
        settings.secret("x" * 20_000)  # a new name: the file must be rewritten, bigger
    assert caught.value.errno == errno.ENOSPC
    assert (home / ".secrets.json").read_bytes() == before
    assert settings.secret("studio_token") == first
    assert sorted(p.name for p in home.iterdir()) == [".filler", ".secrets.json"]


def test_a_salt_that_cannot_be_written_is_not_left_empty(
    tmp_path: Path, small_disk: Callable[[Path, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty `.id_salt` would be read back as the salt of every later pseudonym."""
    home = small_disk(tmp_path / "home", "64k")
    monkeypatch.setenv("LABELER_HOME", str(home))
    monkeypatch.delenv("LABELER_ID_SALT", raising=False)
    fill_disk(home)
    with pytest.raises(OSError) as caught:
        Settings(_env_file=None).salt()
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in home.iterdir()) == [".filler"]
    (home / ".filler").unlink()
    salt = Settings(_env_file=None).salt()
    assert len(salt) == 64 and Settings(_env_file=None).salt() == salt
