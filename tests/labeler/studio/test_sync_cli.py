"""`labeler sync` and `labeler studio status` against a fake Label Studio."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.settings import Settings
from labeler.cli import app
from labeler.lock import single_flight
from labeler.studio.sync import LOCK_NAME
from tests.labeler.studio.fake import (
    PROJECT,
    FakeStudio,
    annotation,
    created,
    seed,
    store_event,
    task,
)

runner = CliRunner()


@pytest.fixture
def studio(monkeypatch: pytest.MonkeyPatch) -> FakeStudio:
    fake = FakeStudio()
    monkeypatch.setattr("labeler.studio.client.connect", lambda _settings: fake)
    monkeypatch.setattr("labeler.studio.project.find_project", lambda _studio, _name: PROJECT)
    return fake


def test_status_counts_and_lists_set_aside_events(
    settings: Settings, sessions: sessionmaker[Session], studio: FakeStudio
) -> None:
    seed(sessions)
    bad = store_event(sessions, created({**annotation(2, 102, reader=1), "result": "BI-RADS 3"}))
    store_event(sessions, created(annotation(1, 101, reader=1)))
    result = runner.invoke(app, ["sync", "--no-reconcile"])
    assert result.exit_code == 0, result.output
    assert "1 webhook event applied, 1 set aside; reviews: 1 new, 0 updated" in result.output
    result = runner.invoke(app, ["studio", "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["events_waiting"], data["events_set_aside"]) == (0, 1)
    (newest,) = data["set_aside_newest"]
    assert newest["event_id"] == bad and "result" in newest["reason"]
    text = runner.invoke(app, ["studio", "status"]).output
    assert f"set aside: event {bad} (ANNOTATION_CREATED): " in text


def test_a_sync_that_cannot_get_the_lock_says_so_with_exit_code_4(
    settings: Settings, sessions: sessionmaker[Session], studio: FakeStudio
) -> None:
    seed(sessions)
    with single_flight(settings.home / LOCK_NAME):
        result = runner.invoke(app, ["sync", "--wait", "0.3"])
    assert result.exit_code == 4
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "sync.lock" in lines[0] and "Traceback" not in result.output


def _sync_json() -> dict[str, int]:
    result = runner.invoke(app, ["sync", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return {k: data[k] for k in ("events", "reviews_new", "reviews_updated", "reviews_unchanged")}


def _sync_line() -> str:
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()[0]


def test_the_line_and_json_count_one_annotation_as_new_then_unchanged(
    settings: Settings, sessions: sessionmaker[Session], studio: FakeStudio
) -> None:
    """Issue 15: `labeler sync` said "2 reviews upserted" for one annotation. Seen by its webhook
    event and by the reconcile it is one new review; every later sync, webhook repeated or not,
    changes nothing and says so, in the summary line and in --json alike."""
    seed(sessions)
    ann = annotation(1, 101, reader=1)
    studio.tasks = [task(101, ann)]
    store_event(sessions, created(ann))
    first = {"events": 1, "reviews_new": 1, "reviews_updated": 0, "reviews_unchanged": 0}
    assert _sync_json() == first
    unchanged = "set aside; reviews: 0 new, 0 updated, 1 unchanged, 0 removed; labels: pending 1"
    assert _sync_line() == f"0 webhook events applied, 0 {unchanged}"
    store_event(sessions, {**created(ann), "action": "ANNOTATION_UPDATED"})  # sent again
    again = {"events": 1, "reviews_new": 0, "reviews_updated": 0, "reviews_unchanged": 1}
    assert _sync_json() == again
    store_event(sessions, {**created(ann), "action": "ANNOTATION_UPDATED"})
    assert _sync_line() == f"1 webhook event applied, 0 {unchanged}"
