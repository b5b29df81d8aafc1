"""Chaos at scale: hostile traffic and kill -9 against a real backend and the jobs, then checks.

    PYTHONPATH=. .venv/bin/python bench/chaos.py [--seconds 30] [--requests 4000] [--clients 4]
        [--seed 12] [--no-retrain] [--json]

Over a fresh home with the whole bundled BUS-BRA sample (62 images, a random-init `small`
detector, half of the images pre-labeled), all on 127.0.0.1:

- serve: `--clients` threads send a seeded mix for `--seconds` (or `--requests`): webhooks (valid
  and malformed), cached and uncached /predict, references to the database and secrets, URLs of
  a host that is not allowed, a pixel bomb, 1000-task requests, surrogates and huge integers;
  meanwhile the server is killed with SIGKILL at random points and restarted, and `labeler
  status` runs from other processes (issue 12 item 1's trigger).
- import, predict, sync (against a stand-in for Label Studio's API), retrain (on a 24-image
  subset): each killed at a random point, then run again to the end.

Then it counts what survived. One table: requests sent (answered), 5xx answers (a 503 with
Retry-After, the bound on cache misses of item 7, is listed apart), acknowledged writes, writes
found afterwards, `PRAGMA integrity_check`. For a job, "requests" are its runs (killed + rerun),
"acknowledged" the rows a finished run must leave and "found" the rows there. The whole run is
bounded by 10 minutes; the defaults take about 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.support.factories import add_prelabels, migrated
from bench.support.harness import (
    HUGE,
    UPLOAD,
    Backend,
    Home,
    build_seed,
    cached_ids,
    cli,
    column,
    count,
    first_child,
    free_port,
    huge_png,
    images,
    integrity,
    kill_group,
    local_ref,
    png_check,
    session_members,
    spawn_cli,
    start_backend,
    stored_annotation_ids,
    write_sample_subset,
)
from bench.support.loopback import Loopback, Reply, fixed, serving
from bench.support.studio_standin import queue_events, record_tasks, studio_standin
from core.birads import Birads
from db.queries import versions as version_queries

RESULTS = Path(__file__).parent / "results" / "chaos.json"
MAX_SECONDS = 600.0
ALL = 1000  # per fold: the whole bundled sample


@dataclass
class Row:
    scenario: str
    requests: int = 0
    server_errors: int = 0
    acknowledged: int = 0
    found: int = 0
    integrity: str = "-"
    notes: list[str] = field(default_factory=list)


@dataclass
class Clock:
    deadline: float

    def left(self, cap: float) -> float:
        return max(1.0, min(cap, self.deadline - time.monotonic()))


# --- serve: traffic and kills ----------------------------------------------------------------


@dataclass
class Traffic:
    """What the client threads share: counters under one lock, the next annotation id."""

    url: str
    home: Home
    refs: list[tuple[int, str]]
    uncached: list[tuple[int, str]]
    outsider: str
    studio: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    answered: int = 0
    server_errors: int = 0
    busy: int = 0
    down: int = 0
    acked: list[int] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    next_id: int = 1_000_000

    def annotation_id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id


def _requests(t: Traffic) -> list[tuple[float, Callable[[random.Random], tuple[str, object]]]]:
    """(weight, make a (path, body)) for each kind of request in the mix."""

    def event(rng: random.Random) -> tuple[str, object]:
        n = t.annotation_id()
        return "/webhook", {
            "action": "ANNOTATION_CREATED",
            "project": {"id": 1},
            "task": {"id": 1},
            "annotation": {"id": n, "task": 1, "result": [], "completed_by": 1},
        }

    def bad_event(rng: random.Random) -> tuple[str, object]:
        bodies: list[object] = [
            {"action": "ANNOTATION_CREATED", "annotation": {"id": 5, "result": "oops"}},
            {"action": "ANNOTATION_CREATED", "annotation": "x"},
            {"action": "ANNOTATION_CREATED", "task": {"id": 2**70}},
            [1, 2],
            {"action": ""},
        ]
        return "/webhook", rng.choice(bodies)

    def predict(refs: list[tuple[int, str]]) -> Callable[[random.Random], tuple[str, object]]:
        def make(rng: random.Random) -> tuple[str, object]:
            image_id, png = rng.choice(refs)
            return "/predict", _tasks([(image_id, local_ref(png))])

        return make

    def hostile(rng: random.Random) -> tuple[str, object]:
        ref = rng.choice(
            [
                local_ref("labeler.db"),
                local_ref("labeler.db-wal"),
                local_ref(".secrets.json"),
                local_ref("images/../labeler.db"),
                str(t.home.home / "labeler.db"),
                f"{t.outsider}/ok.png",
                f"http://127.0.0.1:{free_port()}/x.png",
                f"{t.studio}{HUGE}",
            ]
        )
        return "/predict", _tasks([(rng.choice(t.refs)[0], ref)])

    def many(rng: random.Random) -> tuple[str, object]:
        return "/predict", _tasks(([(i, local_ref(p)) for i, p in t.uncached] * 40)[:1000])

    def odd(rng: random.Random) -> tuple[str, object]:
        return rng.choice(
            [
                ("/predict", '{"tasks": [{"id": 1, "data": {"image": "\\ud800"}}]}'),
                ("/predict", _tasks([(2**63, "x.png")])),
                ("/setup", {"hostname": t.outsider}),
                ("/versions", None),
            ]
        )

    return [
        (40, event),
        (8, bad_event),
        (15, predict(t.refs)),
        (4, predict(t.uncached)),
        (15, hostile),
        (2, many),
        (6, odd),
    ]


def _tasks(refs: list[tuple[int, str]]) -> dict[str, object]:
    return {
        "tasks": [
            {"id": k, "data": {"image": ref, "image_id": image_id}}
            for k, (image_id, ref) in enumerate(refs)
        ]
    }


def _send(client: httpx.Client, path: str, body: object) -> httpx.Response:
    if body is None:
        return client.get(path)
    if isinstance(body, str):
        content = body.encode("utf-8", "surrogatepass")
        return client.post(path, content=content, headers={"content-type": "application/json"})
    return client.post(path, json=body)


def _client_loop(t: Traffic, rng: random.Random, stop: threading.Event, limit: int) -> None:
    mix = _requests(t)
    weights = [w for w, _ in mix]
    with httpx.Client(base_url=t.url, timeout=60, trust_env=False) as client:
        while not stop.is_set():
            with t.lock:
                if t.sent >= limit:
                    stop.set()
                    return
                t.sent += 1
            path, body = rng.choices(mix, weights)[0][1](rng)
            try:
                response = _send(client, path, body)
            except httpx.TransportError:
                with t.lock:
                    t.down += 1  # the server is being killed or restarted
                time.sleep(0.2)
                continue
            _record(t, path, body, response)


def _record(t: Traffic, path: str, body: object, response: httpx.Response) -> None:
    with t.lock:
        t.answered += 1
        if response.status_code == 503 and "retry-after" in response.headers:
            t.busy += 1  # the bound on cache misses (issue 12 item 7): asked to come back
        elif response.status_code >= 500:
            t.server_errors += 1
            if len(t.samples) < 5:
                t.samples.append(f"{path} {str(body)[:80]} -> {response.status_code}")
        elif path == "/webhook" and response.status_code == 200 and isinstance(body, dict):
            annotation = body.get("annotation")
            if response.json().get("status") == "stored" and isinstance(annotation, dict):
                t.acked.append(int(annotation["id"]))


def _kill_loop(
    backend: list[Backend], env: dict[str, str], rng: random.Random, stop: threading.Event
) -> int:
    """SIGKILL the server at random points and restart it on the same port; runs `labeler
    status` from another process in between. Returns the number of kills."""
    kills = 0
    while not stop.wait(rng.uniform(3.0, 8.0)):
        cli(backend[0].home, "status", timeout=60)
        if stop.wait(rng.uniform(0.5, 2.0)):
            break
        backend[0].kill()
        kills += 1
        backend[0] = start_backend(backend[0].home, env, port=backend[0].port)
    return kills


def serve_chaos(seed: Home, base: Path, args: argparse.Namespace, clock: Clock) -> Row:
    home = seed.copy(base / "serve")
    (home.home / ".secrets.json").write_text('{"studio_admin_password": "decoy"}')
    png = (home.home / images(home)[-1][1]).read_bytes()
    studio_routes = {
        UPLOAD: fixed(Reply(200, png, "image/png")),
        HUGE: fixed(Reply(200, huge_png(), "image/png")),
    }
    outsider_routes = {"/ok.png": fixed(Reply(200, png, "image/png"))}
    with serving(studio_routes) as studio, serving(outsider_routes) as outsider:
        env = {"LABELER_STUDIO_URL": studio.url}
        backend = [start_backend(home, env)]
        try:
            row, acked = _drive(home, backend, env, studio, outsider, args, clock)
        finally:
            backend[0].stop()
        if outsider.requests:
            row.notes.append(f"{len(outsider.requests)} fetches from a host not allowed")
    found = stored_annotation_ids(home)
    row.found = len(set(acked) & found)
    row.integrity = integrity(home.db)
    _png_notes(home, row)
    return row


def _drive(
    home: Home,
    backend: list[Backend],
    env: dict[str, str],
    studio: Loopback,
    outsider: Loopback,
    args: argparse.Namespace,
    clock: Clock,
) -> tuple[Row, list[int]]:
    cached = cached_ids(home)
    refs = [(i, p) for i, p in images(home) if i in cached]
    uncached = [(i, p) for i, p in images(home) if i not in cached]
    t = Traffic(backend[0].url, home, refs, uncached, outsider.url, studio.url)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_client_loop, args=(t, random.Random(f"{args.seed}:{k}"), stop, args.requests)
        )
        for k in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    kills: list[int] = []
    killer = threading.Thread(
        target=lambda: kills.append(_kill_loop(backend, env, random.Random(args.seed), stop))
    )
    killer.start()
    stop.wait(clock.left(args.seconds))
    stop.set()
    for thread in [*threads, killer]:
        thread.join(120)
    row = Row("serve (kill -9)", t.answered, t.server_errors, len(t.acked))
    row.notes += [
        f"{sum(kills)} kills; {t.down} more requests met a server being restarted",
        f"{t.busy} answers were 503 with Retry-After (the miss bound), not counted as 5xx",
    ]
    row.notes += t.samples
    return row, t.acked


def _png_notes(home: Home, row: Row) -> None:
    check = png_check(home)
    if check.files_without_row or check.rows_without_file:
        row.notes.append(
            f"{len(check.files_without_row)} PNGs without a row, "
            f"{len(check.rows_without_file)} rows without a PNG"
        )
        row.integrity += " (PNG mismatch)"


# --- jobs: kill -9, then a rerun -------------------------------------------------------------


def _kill_and_rerun(
    home: Home, args: tuple[str, ...], delay: float, clock: Clock, env: dict[str, str] | None = None
) -> tuple[int, str]:
    process = spawn_cli(home, *args, env=env)
    with suppress(Exception):
        process.wait(delay)
    kill_group(process)
    rerun = cli(home, *args, env=env, timeout=clock.left(300))
    return rerun.returncode, rerun.stderr.strip().splitlines()[-1] if rerun.stderr.strip() else ""


def _job_row(name: str, home: Home, expected: int, found: int, code: int, why: str) -> Row:
    row = Row(name, 2, 0, expected, found, integrity(home.db))
    _png_notes(home, row)
    if code not in (0, 1):
        row.notes.append(f"rerun exited {code}: {why[:200]}")
    return row


def import_chaos(seed: Home, base: Path, rng: random.Random, clock: Clock) -> Row:
    home = Home(base / "import")
    home.root.mkdir(parents=True)
    folder = write_sample_subset(home.root, test=ALL, val=ALL, train=ALL)
    argv = ("import", str(folder), "--dataset", "busbra", "--json")
    code, why = _kill_and_rerun(home, argv, rng.uniform(1.0, 10.0), clock)
    expected = count(seed.db, "SELECT count(*) FROM images")
    return _job_row(
        "import", home, expected, count(home.db, "SELECT count(*) FROM images"), code, why
    )


def predict_chaos(seed: Home, base: Path, rng: random.Random, clock: Clock) -> Row:
    home = seed.copy(base / "predict")
    code, why = _kill_and_rerun(home, ("predict", "--json"), rng.uniform(1.0, 10.0), clock)
    return _job_row("predict", home, len(images(home)), len(cached_ids(home)), code, why)


def sync_chaos(seed: Home, base: Path, rng: random.Random, clock: Clock) -> Row:
    home = seed.copy(base / "sync")
    settings = home.settings()
    sessions = migrated(settings)
    with sessions() as session:
        version = version_queries.active_model_id(session, kind="detector")
    assert version is not None
    tasks = record_tasks(sessions, settings, version, sorted(cached_ids(home)))
    malformed = queue_events(sessions, tasks, 5)
    sessions.kw["bind"].dispose()
    with studio_standin(tasks, settings.studio_project) as studio:
        env = {"LABELER_STUDIO_URL": studio.url}
        code, why = _kill_and_rerun(home, ("sync", "--json"), rng.uniform(0.5, 6.0), clock, env)
    row = _job_row(
        "sync", home, 3 * len(tasks), count(home.db, "SELECT count(*) FROM reviews"), code, why
    )
    aside = count(home.db, "SELECT count(*) FROM studio_events WHERE error IS NOT NULL")
    row.notes.append(f"{aside} of {malformed} malformed events set aside")
    return row


def retrain_chaos(seed: Home, base: Path, rng: random.Random, clock: Clock) -> Row:
    """Kill only the leader mid-training (its trainer must die too), then a full rerun; on a
    24-image subset, where a whole retrain takes about a minute on 2 cores, not three."""
    del seed
    home = build_seed(base / "retrain")
    sessions = migrated(home.settings())
    active = column(home.db, "SELECT model_version_id FROM active_models WHERE kind = 'detector'")
    todo = sorted({i for i, _ in images(home)} - cached_ids(home))
    add_prelabels(sessions, str(active[0]), todo, Birads.B3)
    sessions.kw["bind"].dispose()
    process = spawn_cli(home, "retrain", "--force", "--json")
    try:
        first_child(process.pid, timeout=clock.left(120))
        time.sleep(rng.uniform(0.0, 3.0))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        time.sleep(3)
        orphans = session_members(process.pid)
    finally:
        kill_group(process)
    rerun = cli(home, "retrain", "--force", "--json", timeout=clock.left(400))
    why = rerun.stderr.strip().splitlines()[-1] if rerun.stderr.strip() else ""
    row = _job_row("retrain", home, len(images(home)), len(cached_ids(home)), rerun.returncode, why)
    row.notes.append(f"{len(orphans)} trainer processes outlived a killed retrain")
    return row


# --- report ----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = (
        "scenario",
        "requests sent",
        "5xx",
        "acknowledged writes",
        "found afterwards",
        "integrity",
    )
    lines = [head] + [
        (
            r.scenario,
            str(r.requests),
            str(r.server_errors),
            str(r.acknowledged),
            str(r.found),
            r.integrity,
        )
        for r in rows
    ]
    widths = [max(len(line[k]) for line in lines) for k in range(len(head))]
    out = [
        "  ".join(
            cell.ljust(w) if k == 0 else cell.rjust(w)
            for k, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    for row in rows:
        out += [f"  {row.scenario}: {note}" for note in row.notes]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="serve phase, at most")
    parser.add_argument("--requests", type=int, default=4000, help="serve phase, at most")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--no-retrain", action="store_true", help="skip the longest scenario")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    clock = Clock(time.monotonic() + MAX_SECONDS)
    os.environ["OMP_NUM_THREADS"] = "1"
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        base = Path(tmp)
        seed = build_seed(base / "seed", test=ALL, val=ALL, train=ALL)
        rng = random.Random(args.seed)
        rows = [serve_chaos(seed, base, args, clock)]
        for job in (import_chaos, predict_chaos, sync_chaos, retrain_chaos):
            if job is retrain_chaos and args.no_retrain:
                continue
            rows.append(job(seed, base, rng, clock))
    report = {
        "seed": args.seed,
        "seconds": round(time.monotonic() - start, 1),
        "rows": [asdict(r) for r in rows],
        "lost": sum(r.acknowledged - r.found for r in rows),
        "server_errors": sum(r.server_errors for r in rows),
        "integrity_ok": all(r.integrity == "ok" for r in rows),
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(rows))
        print(
            f"lost acknowledged writes: {report['lost']}, 5xx: {report['server_errors']}, "
            f"integrity ok: {report['integrity_ok']} ({report['seconds']} s, seed {args.seed})"
        )


if __name__ == "__main__":
    main()
