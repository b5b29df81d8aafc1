"""A corrupt database file: the dashboard says so in words, never with a traceback."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from bench.support.harness import free_port
from core.settings import Settings


@pytest.mark.sqlite_only
def test_a_file_that_is_not_a_database_gets_a_readable_message(
    settings: Settings, open_page: Callable[[str | None], AppTest]
) -> None:
    settings.home.mkdir(parents=True)
    db = settings.home / "labeler.db"
    db.write_bytes(random.Random(0).randbytes(4096))
    at = open_page(None)  # asserts that no exception reached the page
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert "damaged or not a database (file is not a database)" in errors[0]
    assert "labeler init" in errors[0] and "Traceback" not in errors[0]
    assert db.read_bytes() == random.Random(0).randbytes(4096)  # read-only: left as it was


@pytest.mark.sqlite_only  # the URL is the test's own: a PostgreSQL port nothing listens on
def test_a_database_server_that_does_not_answer_gets_a_readable_message(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    open_page: Callable[[str | None], AppTest],
) -> None:
    monkeypatch.setenv("LABELER_DB_URL", f"postgresql+psycopg://labeler@127.0.0.1:{free_port()}/x")
    at = open_page(None)  # asserts that no exception reached the page
    (error,) = [e.value for e in at.error]
    assert error.startswith("The database server cannot be reached (") and "disk" not in error
    assert "LABELER_DB_URL" in error and "Traceback" not in error
