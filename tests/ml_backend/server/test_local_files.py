"""Item 1 of issue 12: the backend never opens the database, its WAL, secrets or anything else
under LABELER_HOME but its own PNGs, however the reference is spelled.

Opening and closing the SQLite file (even to read it as an image) drops the server's POSIX locks;
so these tests record every file Python opens during the requests and assert that none of them
is a protected file, besides the 400.
"""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from ml_backend.server.errors import ImageRefused
from ml_backend.server.local_files import LocalFiles
from tests.ml_backend.server.support import World, task


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every path opened through os.open, open() or io.open while the test runs."""
    seen: list[Path] = []
    real_os_open, real_open = os.open, builtins.open

    def os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        seen.append(Path(os.fsdecode(path)).absolute())
        return real_os_open(path, *args, **kwargs)

    def py_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, bytes, os.PathLike)):
            seen.append(Path(os.fsdecode(file)).absolute())
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)
    monkeypatch.setattr(io, "open", py_open)
    yield seen


def _protected(home: Path) -> list[Path]:
    names = ["labeler.db", "labeler.db-wal", "labeler.db-shm", "labeler.db-journal"]
    return [home / n for n in [*names, ".secrets.json", ".id_salt"]]


def _hostile(world: World, tmp_path: Path) -> list[str]:
    """References that all point at something under home that is not one of our PNGs."""
    home, root = world.settings.home, world.settings.data_root
    (home / ".secrets.json").write_text('{"studio_token": "x"}')
    (home / ".id_salt").write_text("salt")
    (home / "models").mkdir(exist_ok=True)
    (home / "models" / "weights.png").write_bytes(world.png(world.ids[0]).read_bytes())
    (root / "db-link.png").symlink_to(home / "labeler.db")
    (root / "home-link").symlink_to(home)
    os.link(home / "labeler.db", root / "hard-link.png")
    return [
        "/data/local-files/?d=labeler.db",
        "/data/local-files/?d=./labeler.db",
        "/data/local-files/?d=images/../labeler.db",
        "/data/local-files/?d=%2e%2e/home/labeler.db",
        "/data/local-files/?d=../home/labeler.db",
        f"/data/local-files/?d={home / 'labeler.db'}",
        "/data/local-files/?d=labeler.db-wal",
        "/data/local-files/?d=labeler.db-shm",
        "/data/local-files/?d=.secrets.json",
        "/data/local-files/?d=.id_salt",
        "/data/local-files/?d=models/weights.png",
        "/data/local-files/?d=../root/db-link.png",
        "/data/local-files/?d=../root/hard-link.png",
        "/data/local-files/?d=../root/home-link/labeler.db",
        "http://127.0.0.1:8080/data/local-files/?d=labeler.db",
        str(home / "labeler.db"),
        str(root / "db-link.png"),
        str(root / "hard-link.png"),
        "root/db-link.png",
        "root/home-link/labeler.db",
        "root/home-link/.secrets.json",
        "root/home-link/models/weights.png",
        "home/labeler.db",
        "root/../home/labeler.db",
        "/data/local-files/?d=labeler.db%00.png",
    ]


def test_references_to_the_database_and_home_are_refused_without_opening_them(
    backend: World, tmp_path: Path, opened: list[Path]
) -> None:
    # data_root contains home, as in a real install (data_root='..')
    client = backend.client(data_root=tmp_path.resolve())
    for ref in _hostile(backend, tmp_path):
        opened.clear()
        response = client.post("/predict", json={"tasks": [task(ref, backend.ids[2])]})
        assert response.status_code == 400, (ref, response.text)
        assert (
            "image path refused" in response.json()["detail"]
            or "unsupported" in (response.json()["detail"])
        ), ref
        touched = {p.resolve() for p in opened}
        assert not touched & set(_protected(backend.settings.home)), (ref, touched)
        assert str(backend.settings.home) not in response.text
    assert not backend.cached(backend.ids[2])


def test_our_pngs_and_images_under_the_data_root_are_still_read(
    backend: World, tmp_path: Path
) -> None:
    client = backend.client(data_root=tmp_path.resolve())
    ours = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[2]))]})
    assert ours.status_code == 200, ours.text
    outside = tmp_path / "root" / "scan.PNG"
    outside.write_bytes(backend.png(backend.ids[3]).read_bytes())
    for ref in (str(outside), "root/scan.PNG", "/data/local-files/?d=../root/scan.PNG"):
        response = client.post("/predict", json={"tasks": [task(ref)]})
        assert response.status_code == 200, (ref, response.text)


def test_judge_decides_from_the_resolved_path_suffix_and_inode(
    settings: Settings, tmp_path: Path
) -> None:
    home = settings.home
    (home / "images").mkdir(parents=True)
    (home / "labeler.db").write_bytes(b"SQLite format 3\x00")
    (home / "images" / "a.png").write_bytes(b"png")
    files = LocalFiles.for_settings(settings.model_copy(update={"data_root": tmp_path}))
    assert files.judge(home / "images" / "a.png").exists
    assert not files.judge(home / "images" / "missing.png").exists
    fifo = tmp_path / "root" / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "root" / "dir.png").mkdir()
    loop = tmp_path / "root" / "loop.png"
    loop.symlink_to(loop)
    for bad in (
        home / "labeler.db",
        home / "images" / ".." / "labeler.db",
        home / "notes.png",
        fifo,
        tmp_path / "root" / "dir.png",
        loop,
        Path("/etc/hostname.png"),
        tmp_path / "root" / "a.txt",
    ):
        with pytest.raises(ImageRefused):
            files.judge(bad)


def test_a_refused_reference_is_a_400_even_without_a_model(
    settings: Settings, sessions: Any, opened: list[Path]
) -> None:
    from fastapi.testclient import TestClient

    from ml_backend.server.app import create_app

    client = TestClient(create_app(settings))
    response = client.post("/predict", json={"tasks": [task("/data/local-files/?d=labeler.db")]})
    assert response.status_code == 400, response.text
    assert settings.home / "labeler.db" not in {p.resolve() for p in opened}
