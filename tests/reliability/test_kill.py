"""kill -9 at seeded random points (serve under webhooks, import, predict, sync), then a
rerun: acknowledged writes are there, PNG files and rows match, `PRAGMA integrity_check` is ok.

The kill points come from `random.Random(SEED)`; set LABELER_CHAOS_SEED to try others (the
failing seed is in every assertion message). `labeler sync` runs against a stand-in for the four
Label Studio endpoints it calls (studio_standin.py): a real Label Studio takes about a minute to
start, which this folder's 3-minute budget cannot afford; bench/chaos.py does the same at scale.
Killing retrain mid-training (its trainer must die with it; the old version serves, intact) is
tests/labeler/test_retrain.py's kill-9 test.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from bench.support.factories import migrated
from bench.support.harness import (
    Backend,
    Home,
    cached_ids,
    cli,
    count,
    images,
    integrity,
    kill_group,
    local_ref,
    png_check,
    post_event,
    predict_body,
    spawn_cli,
    start_backend,
    stored_annotation_ids,
    write_sample_subset,
)
from bench.support.studio_standin import queue_events, record_tasks, studio_standin
from db.queries import versions as version_queries

SEED = int(os.environ.get("LABELER_CHAOS_SEED", "12"))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(f"{SEED}:{request.node.name}")


def _intact(home: Home, where: str) -> None:
    assert integrity(home.db) == "ok", f"{where}: integrity_check failed (seed {SEED})"
    check = png_check(home)
    assert check.files_without_row == [], f"{where}: PNG files without a row (seed {SEED})"
    assert check.rows_without_file == [], f"{where}: rows whose PNG is gone (seed {SEED})"


class Writer(threading.Thread):
    """Posts webhooks (and a /predict now and then) until the server stops answering."""

    def __init__(self, backend: Backend, first_id: int, refs: list[tuple[int, str]]) -> None:
        super().__init__(daemon=True)
        self.backend, self.next_id, self.refs = backend, first_id, refs
        self.acked: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with self.backend.client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    if post_event(client, self.next_id):
                        self.acked.append(self.next_id)
                    if self.next_id % 10 == 0 and self.refs:
                        image_id, png = self.refs[self.next_id // 10 % len(self.refs)]
                        client.post("/predict", json=predict_body(local_ref(png), image_id))
                except httpx.HTTPError:
                    return  # killed: whatever was acknowledged so far must survive
                self.next_id += 1


def test_kill_serve_while_webhooks_are_posted(fresh_home: Home, rng: random.Random) -> None:
    """Webhooks and uncached /predict (which write) while the server is SIGKILLed; bench/chaos.py
    kills it again and again."""
    refs = [(i, p) for i, p in images(fresh_home) if i not in cached_ids(fresh_home)]
    backend = start_backend(fresh_home)
    writer = Writer(backend, 100_000, refs)
    try:
        writer.start()
        time.sleep(rng.uniform(0.5, 2.5))
        backend.kill()
        writer.join(15)
    finally:
        writer.stop.set()
        backend.kill()
    acked = list(writer.acked)
    backend = start_backend(fresh_home)  # the rerun
    try:
        with backend.client() as client:
            acked += [n for n in range(900_000, 900_020) if post_event(client, n)]
    finally:
        backend.stop()
    assert len(acked) >= 20, "too few writes to mean anything"
    lost = sorted(set(acked) - stored_annotation_ids(fresh_home))
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged webhooks lost (seed {SEED})"
    _intact(fresh_home, "serve")
    assert cli(fresh_home, "status").returncode == 0


def _kill_then_rerun(
    home: Home, args: tuple[str, ...], delay: float, env: dict[str, str] | None = None
) -> dict[str, object]:
    """Start, kill -9 the whole group after `delay` s, rerun to the end; the rerun's --json."""
    process = spawn_cli(home, *args, env=env)
    try:
        with suppress(Exception):
            process.wait(delay)
    finally:
        kill_group(process)
    rerun = cli(home, *args, env=env, timeout=150)
    where = f"{args} after a kill at {delay:.1f} s (seed {SEED})"
    assert rerun.returncode in (0, 1), f"{where}: {rerun.returncode} {rerun.stderr[-1500:]}"
    try:
        data = json.loads(rerun.stdout)
    except json.JSONDecodeError:
        data = None
    assert isinstance(data, dict), (
        f"{args}: the rerun's --json is not an object: {rerun.stdout[-500:]!r}"
    )
    return data


def test_kill_import_then_rerun(seed: Home, tmp_path: Path, rng: random.Random) -> None:
    home = Home(tmp_path / "import")
    home.root.mkdir(parents=True)
    folder = write_sample_subset(home.root, test=4, val=4, train=16)
    delay = rng.uniform(1.0, 8.0)
    _kill_then_rerun(home, ("import", str(folder), "--dataset", "busbra", "--json"), delay)
    assert count(home.db, "SELECT count(*) FROM images") == count(
        seed.db, "SELECT count(*) FROM images"
    ), f"import killed at {delay:.1f} s (seed {SEED})"
    _intact(home, f"import killed at {delay:.1f} s")


def test_kill_predict_then_rerun(fresh_home: Home, rng: random.Random) -> None:
    delay = rng.uniform(1.0, 8.0)
    _kill_then_rerun(fresh_home, ("predict", "--json"), delay)
    assert cached_ids(fresh_home) == {i for i, _ in images(fresh_home)}, f"killed at {delay:.1f} s"
    _intact(fresh_home, f"predict killed at {delay:.1f} s")


def test_kill_sync_then_rerun(fresh_home: Home, rng: random.Random) -> None:
    """Sync against the Label Studio stand-in, with a malformed event queued among valid ones."""
    settings = fresh_home.settings()
    sessions = migrated(settings)
    with sessions() as session:
        version = version_queries.active_model_id(session, kind="detector")
    assert version is not None
    tasks = record_tasks(sessions, settings, version, sorted(cached_ids(fresh_home)))
    malformed = queue_events(sessions, tasks, 3)
    sessions.kw["bind"].dispose()
    delay = rng.uniform(0.5, 6.0)
    with studio_standin(tasks, settings.studio_project) as studio:
        env = {"LABELER_STUDIO_URL": studio.url}
        _kill_then_rerun(fresh_home, ("sync", "--json"), delay, env)
        assert any(r.startswith("GET /api/tasks/") for r in studio.requests), "no reconcile ran"
    where = f"sync killed at {delay:.1f} s (seed {SEED})"
    assert count(fresh_home.db, "SELECT count(*) FROM reviews") == 3 * len(tasks), where
    assert count(fresh_home.db, "SELECT count(*) FROM labels") == len(tasks), where
    waiting = "SELECT count(*) FROM studio_events WHERE processed_at IS NULL AND error IS NULL"
    assert count(fresh_home.db, waiting) == 0, f"{where}: events left unprocessed"
    set_aside = "SELECT count(*) FROM studio_events WHERE error IS NOT NULL"
    assert count(fresh_home.db, set_aside) == malformed, f"{where}: bad events not set aside"
    _intact(fresh_home, where)
