"""db.queries.runs: a training run is resumable until it succeeds."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.models import TrainingRun
from db.queries import runs as run_queries
from tests.db.rows import add_version

MANIFEST = "a" * 64


def test_unfinished_run_is_found_until_it_succeeds(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "v1")
        old = run_queries.start_training_run(
            s, kind="detector", config={}, n_train_images=5, manifest=MANIFEST
        )
        run_queries.finish_training_run(s, run_id=old.id, status="failed", epochs_done=2, error="x")
        new = run_queries.start_training_run(
            s, kind="detector", config={"lr": 0.1}, n_train_images=5, manifest=MANIFEST
        )
    with sessions() as s:
        found = run_queries.unfinished_training_run(s, kind="detector", manifest=MANIFEST)
        assert found is not None and found.id == new.id and found.status == "running"
        assert run_queries.unfinished_training_run(s, kind="encoder", manifest=MANIFEST) is None
        assert run_queries.unfinished_training_run(s, kind="detector", manifest="b" * 64) is None
    with sessions.begin() as s:
        run_queries.finish_training_run(
            s, run_id=new.id, status="succeeded", epochs_done=7, model_version_id="v1"
        )
    with sessions() as s:
        done = s.get_one(TrainingRun, new.id)
        assert (done.status, done.epochs_done, done.model_version_id) == ("succeeded", 7, "v1")
        assert done.finished_at is not None
        left = run_queries.unfinished_training_run(s, kind="detector", manifest=MANIFEST)
        assert left is not None and left.id == old.id  # the failed one is still resumable
