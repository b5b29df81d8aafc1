"""The backend tests' world: a few bundled images imported, a detector registered."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from tests.ml_backend.server.support import World, make_world


@pytest.fixture
def backend(settings: Settings, sessions: sessionmaker[Session]) -> World:
    return make_world(settings, sessions)
