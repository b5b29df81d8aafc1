"""Fixtures: a seeded database (tests/dashboards/seed.py) and the app under AppTest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from core.settings import Settings
from tests.dashboards.seed import PLAN, Plan, seed, seed_single

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@pytest.fixture
def seeded(settings: Settings, sessions: sessionmaker[Session]) -> Plan:
    with sessions.begin() as session:
        seed(session, settings.home)
    return PLAN


@pytest.fixture
def seeded_single(settings: Settings, sessions: sessionmaker[Session]) -> Plan:
    """One of each (seed.SINGLE): every count a page prints is 1."""
    with sessions.begin() as session:
        return seed_single(session, settings.home)


@pytest.fixture
def open_page() -> Callable[[str], AppTest]:
    """Run the app, then switch to one page (None: stay on the entry page) and run it."""

    def run(page: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30).run()
        if page is not None:
            at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run
