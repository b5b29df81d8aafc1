"""A real Label Studio and our ML backend, started once for these tests and stopped by pid.

Label Studio comes from `.venv-ls` (the README's test command installs it). If it is missing
the tests fail with the install command; they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.support.factories import (
    add_prelabels,
    import_sample,
    migrated,
    register_random_detector,
)
from bench.support.harness import free_port
from bench.support.samples import copy_sample
from core.birads import Birads
from core.settings import Settings
from db.models import Image, Split
from labeler.context import AppContext
from labeler.services import Service, start_backend, start_label_studio
from labeler.studio.client import Studio, connect
from labeler.studio.project import ProjectInfo, ensure_project
from labeler.studio.readers import ReaderAccount, ensure_readers
from labeler.studio.server import stop_process


@dataclass
class Stack:
    settings: Settings
    app: AppContext
    sessions: sessionmaker[Session]
    version: str
    studio: Studio
    project: ProjectInfo
    readers: list[ReaderAccount]
    backend: Service
    label_studio: Service
    artifacts: Path

    def restart_backend(self) -> None:
        self.stop_backend()
        self.backend = start_backend(self.settings, self.settings.home / "logs")

    def stop_backend(self) -> None:
        if self.backend.process is not None:
            stop_process(self.backend.process)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("studio")
    root = base / "root"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        env = {
            "LABELER_HOME": str(base / "home"),
            "LABELER_DATA_ROOT": str(root),
            "LABELER_ID_SALT": "integration",
            "LABELER_DB_URL": "",
            "LABELER_OCR": "off",
            "LABELER_IMPORT_WORKERS": "1",
            "LABELER_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
            "LABELER_BACKEND_URL": f"http://127.0.0.1:{free_port()}",
            "LABELER_DASHBOARD_PORT": str(free_port()),
        }
        for key, value in env.items():
            mp.setenv(key, value)
        settings = Settings(_env_file=None)
        sessions = migrated(settings)
        import_sample(settings, sessions, copy_sample("busbra_mini", root), "busbra")
        version = register_random_detector(settings, sessions)
        with sessions() as session:
            pool = session.scalars(select(Image.id).where(Image.split != Split.TEST)).all()
        add_prelabels(sessions, version, sorted(pool), Birads.B4A)
        backend = start_backend(settings, settings.home / "logs")
        try:
            label_studio = start_label_studio(settings)
        except BaseException:
            if backend.process is not None:
                stop_process(backend.process)
            raise
        artifacts = Path(__file__).resolve().parents[1] / "artifacts"
        artifacts.mkdir(exist_ok=True)
        try:
            studio = connect(settings)
            project = ensure_project(studio, settings)
            readers = ensure_readers(studio, settings)
            app = AppContext(settings)
            stack = Stack(
                settings,
                app,
                sessions,
                version,
                studio,
                project,
                readers,
                backend,
                label_studio,
                artifacts,
            )
            yield stack
            backend = stack.backend  # the lost-webhook test restarts it
        finally:
            for service in (label_studio, backend):
                if service.process is not None:
                    stop_process(service.process)
