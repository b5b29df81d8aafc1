"""Issue 12 item 10, from the outside: concurrent `labeler sync` runs and concurrent imports.

10 of 33 concurrent syncs aborted with IntegrityError; of two concurrent imports of one folder,
the second crashed with a traceback and an empty --json. Here every run must end with a code of
the CLI's contract (0, 1 partial, 4 busy), no traceback and (when it finishes) a valid --json;
afterwards the rows are exactly those of one complete run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.support.factories import migrated
from bench.support.harness import (
    Home,
    cached_ids,
    count,
    has_traceback,
    integrity,
    png_check,
    spawn_cli,
    write_sample_subset,
)
from bench.support.studio_standin import queue_events, record_tasks, studio_standin
from db.queries import versions as version_queries


def _finish(processes: list[subprocess.Popen[str]], timeout: float = 150.0) -> list[str]:
    """Wait for all; returns what broke the contract."""
    wrong = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        if process.returncode not in (0, 1, 4) or has_traceback(err):
            wrong.append(f"exit {process.returncode}: {err[-800:]}")
        elif process.returncode in (0, 1):
            try:
                parsed = json.loads(out)
            except json.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                wrong.append(f"exit {process.returncode} without a --json object: {out[-300:]!r}")
    return wrong


def test_concurrent_syncs_all_finish_and_store_each_review_once(fresh_home: Home) -> None:
    settings = fresh_home.settings()
    sessions = migrated(settings)
    with sessions() as session:
        version = version_queries.active_model_id(session, kind="detector")
    assert version is not None
    tasks = record_tasks(sessions, settings, version, sorted(cached_ids(fresh_home)))
    queue_events(sessions, tasks, len(tasks), malformed=False)
    sessions.kw["bind"].dispose()
    with studio_standin(tasks, settings.studio_project) as studio:
        env = {"LABELER_STUDIO_URL": studio.url}
        runs = [spawn_cli(fresh_home, "sync", "--json", env=env) for _ in range(4)]
        wrong = _finish(runs)
    assert wrong == [], "\n".join(wrong)
    assert count(fresh_home.db, "SELECT count(*) FROM reviews") == 3 * len(tasks)
    assert count(fresh_home.db, "SELECT count(*) FROM labels") == len(tasks)
    assert integrity(fresh_home.db) == "ok"


@pytest.mark.parametrize("first_run", [False, True], ids=["migrated", "no-database-yet"])
def test_imports_of_one_folder_at_once(tmp_path: Path, seed: Home, first_run: bool) -> None:
    """Two at once; three on a home with no database yet, where they also create the schema at
    once (a race: more runs, more chances to catch it)."""
    home = Home(tmp_path / "both")
    home.root.mkdir(parents=True)
    folder = write_sample_subset(home.root, test=4, val=4, train=16)
    if not first_run:
        migrated(home.settings()).kw["bind"].dispose()
    argv = ("import", str(folder), "--dataset", "busbra", "--json")
    wrong = _finish([spawn_cli(home, *argv) for _ in range(3 if first_run else 2)])
    assert wrong == [], "\n".join(wrong)
    assert count(home.db, "SELECT count(*) FROM images") == count(
        seed.db, "SELECT count(*) FROM images"
    )
    check = png_check(home)
    assert (check.files_without_row, check.rows_without_file) == ([], [])
    assert integrity(home.db) == "ok"
