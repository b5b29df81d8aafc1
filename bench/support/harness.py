"""The reliability harness: a seeded home, a real `labeler serve`, CLI runs, database checks.

Everything here talks to 127.0.0.1 only. A home is built once per session (a subset of the
bundled BUS-BRA sample imported, a random-init `small` detector active, pre-labels for half of
the images) and copied for every server or job that may damage it; model folders are hard links
(versions are immutable). Processes run in their own session and are stopped by their pid.
`bench/chaos.py` uses the same pieces at scale.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image as PILImage
from sqlalchemy import select

from bench.support.factories import add_prelabels, import_sample, migrated, register_random_detector
from core.birads import Birads
from core.settings import Settings
from db.models import Image
from labeler.sample import bundled

SAMPLE = "busbra_mini"
SALT = "reliability-salt-not-secret"
TRACEBACK_MARKS = ("Traceback", 'File "')
UPLOAD = "/data/upload/1/other.png"  # where Label Studio serves an uploaded file
HUGE = "/data/upload/1/huge.png"  # 12000 x 12000, about 140 KB
BIG = "/data/upload/1/big.png"  # 300 MB, Content-Length declared
BIG_CHUNKED = "/data/upload/1/big-chunked.png"  # 300 MB, length unknown until the end
MAX_DOWNLOAD = 4 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Home:
    """A LABELER_HOME and its data root side by side under `base`."""

    base: Path

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def db(self) -> Path:
        return self.home / "labeler.db"

    @property
    def sample(self) -> Path:
        return self.root / SAMPLE

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What every child process sees; LABELER_* from the caller's shell are dropped."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
        env.update(
            LABELER_HOME=str(self.home),
            LABELER_DATA_ROOT=str(self.root),
            LABELER_ID_SALT=SALT,
            LABELER_DB_URL="",
            LABELER_OCR="off",
            LABELER_IMPORT_WORKERS="2",
            LABELER_STUDIO_URL="http://127.0.0.1:9",  # nothing listens there
            LABELER_RETRAIN_EPOCHS="1",
            LABELER_RETRAIN_NO4="false",
            OMP_NUM_THREADS="1",
        )
        env.update(extra or {})
        return env

    def settings(self) -> Settings:
        return Settings(
            _env_file=None,
            home=self.home,
            data_root=self.root,
            id_salt=SALT,
            db_url="",
            ocr="off",
            import_workers=2,
        )

    def copy(self, dest: Path) -> Home:
        """A fresh copy; model folders are hard-linked (a version never changes)."""
        shutil.copytree(self.root, dest / "root")
        shutil.copytree(self.home, dest / "home", ignore=shutil.ignore_patterns("models"))
        if (self.home / "models").is_dir():
            shutil.copytree(self.home / "models", dest / "home" / "models", copy_function=os.link)
        return Home(dest)


def write_sample_subset(dest: Path, *, test: int, val: int, train: int) -> Path:
    """A copy of the bundled BUS-BRA sample that lists only some images per fold (faster jobs)."""
    folder = dest / SAMPLE
    shutil.copytree(bundled(SAMPLE), folder)
    table = folder / "annotations_derived.csv"
    with table.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    wanted = {"1": test, "2": val}
    kept, seen = [], {"1": 0, "2": 0, "train": 0}
    for row in rows:
        key = row["fold5"] if row["fold5"] in wanted else "train"
        limit = wanted.get(key, train)
        if seen[key] < limit:
            seen[key] += 1
            kept.append(row)
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return folder


def build_seed(base: Path, *, test: int = 4, val: int = 4, train: int = 16) -> Home:
    """Import the subset, register a random detector, pre-label every other image."""
    seed = Home(base)
    seed.root.mkdir(parents=True)
    folder = write_sample_subset(seed.root, test=test, val=val, train=train)
    settings = seed.settings()
    sessions = migrated(settings)
    import_sample(settings, sessions, folder, "busbra")
    version = register_random_detector(settings, sessions)
    with sessions() as session:
        ids = list(session.scalars(select(Image.id).order_by(Image.id)))
    add_prelabels(sessions, version, ids[::2], Birads.B4A)
    sessions.kw["bind"].dispose()
    return seed


# --- processes -----------------------------------------------------------------------------


def cli(
    home: Home, *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """One `labeler` command in its own process, as cron or a reader's shell would run it."""
    return subprocess.run(
        [sys.executable, "-m", "labeler.cli", *args],
        cwd=home.base,
        env=home.env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_cli(home: Home, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A `labeler` command in its own session (so its whole group can be killed by pid)."""
    return subprocess.Popen(
        [sys.executable, "-m", "labeler.cli", *args],
        cwd=home.base,
        env=home.env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group we started (its pid is the group id)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(10)


def session_members(sid: int) -> list[int]:
    """Live pids whose session id is `sid` (what a kill -9 of the leader may leave behind)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def first_child(leader: int, timeout: float = 120.0) -> int | None:
    """A process the session leader started (retrain's trainer), once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = [p for p in session_members(leader) if p != leader]
        if others:
            return others[0]
        time.sleep(0.2)
    return None


@dataclass
class Backend:
    """A real `labeler serve` process on a free loopback port."""

    home: Home
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 60.0, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False, **kwargs)  # type: ignore[arg-type]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        kill_group(self.process)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; always by the pid we started."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def launch_backend(
    home: Home, env: dict[str, str] | None = None, port: int | None = None
) -> Backend:
    """Start `labeler serve` without waiting for it (see wait_healthy)."""
    port = port or free_port()
    log = home.base / f"serve-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labeler.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=home.base,
            env=home.env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Backend(home, port, process, log)


def wait_healthy(backend: Backend, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backend.process.poll() is not None:
            raise AssertionError(
                f"labeler serve exited with {backend.process.returncode}:\n{backend.log_tail()}"
            )
        with suppress(httpx.HTTPError):
            if httpx.get(f"{backend.url}/health", timeout=2.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.1)
    backend.kill()
    raise AssertionError(f"labeler serve did not answer /health in {timeout:.0f} s")


def start_backend(
    home: Home, env: dict[str, str] | None = None, port: int | None = None
) -> Backend:
    backend = launch_backend(home, env, port)
    try:
        wait_healthy(backend)
    except BaseException:
        backend.kill()
        raise
    return backend


@contextmanager
def running_backend(home: Home, env: dict[str, str] | None = None) -> Iterator[Backend]:
    backend = start_backend(home, env)
    try:
        yield backend
    finally:
        backend.stop()


# --- what the database holds ---------------------------------------------------------------


@contextmanager
def connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection (another process's view); closed at once after use."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def integrity(db: Path) -> str:
    with connect(db) as conn:
        return "; ".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))


def count(db: Path, sql: str, *params: object) -> int:
    with connect(db) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


def column(db: Path, sql: str, *params: object) -> list[object]:
    with connect(db) as conn:
        return [r[0] for r in conn.execute(sql, params)]


def db_bytes(home: Home) -> int:
    """The database with its WAL: what a stored body would grow."""
    return sum(p.stat().st_size for p in home.home.glob("labeler.db*") if p.is_file())


@dataclass(frozen=True)
class PngCheck:
    files_without_row: list[str]
    rows_without_file: list[str]
    rows: int


def png_check(home: Home) -> PngCheck:
    """Every PNG under images/ has a row and every row's PNG exists."""
    files = {p.relative_to(home.home).as_posix() for p in home.home.glob("images/**/*.png")}
    rows = {str(r) for r in column(home.db, "SELECT png_path FROM images")}
    return PngCheck(sorted(files - rows), sorted(rows - files), len(rows))


def stored_annotation_ids(home: Home) -> set[int]:
    ids = column(home.db, "SELECT ls_annotation_id FROM studio_events WHERE ls_annotation_id > 0")
    return {int(i) for i in ids if isinstance(i, int)}


def images(home: Home) -> list[tuple[int, str]]:
    """(id, png_path) of every image, by id."""
    with connect(home.db) as conn:
        return [
            (int(i), str(p)) for i, p in conn.execute("SELECT id, png_path FROM images ORDER BY id")
        ]


def cached_ids(home: Home) -> set[int]:
    """Images with a stored prediction of the active detector."""
    sql = (
        "SELECT p.image_id FROM predictions p JOIN active_models a "
        "ON a.model_version_id = p.model_version_id WHERE a.kind = 'detector'"
    )
    return {int(str(i)) for i in column(home.db, sql)}


# --- requests ------------------------------------------------------------------------------


def local_ref(png_path: str) -> str:
    """How Label Studio's local-files storage names one of our PNGs."""
    return f"/data/local-files/?d={png_path}"


def predict_body(image: str, image_id: int | None = None, task_id: int = 1) -> dict[str, object]:
    data: dict[str, object] = {"image": image}
    if image_id is not None:
        data["image_id"] = image_id
    return {"tasks": [{"id": task_id, "data": data}]}


def annotation_event(annotation_id: int, task_id: int = 1) -> dict[str, object]:
    """An ANNOTATION_CREATED as Label Studio posts it (a task we may not know: still stored)."""
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1},
        "task": {"id": task_id},
        "annotation": {"id": annotation_id, "task": task_id, "result": [], "completed_by": 1},
    }


def post_event(client: httpx.Client, annotation_id: int, task_id: int = 1) -> bool:
    """True when the backend acknowledged the event as stored."""
    response = client.post("/webhook", json=annotation_event(annotation_id, task_id))
    return response.status_code == 200 and response.json().get("status") == "stored"


def huge_png(width: int = 12_000, height: int = 12_000) -> bytes:
    """A valid, tiny (about 140 KB at 12000x12000) PNG of one grey level: a decompression bomb."""
    buffer = io.BytesIO()
    PILImage.new("L", (width, height), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """Only a PNG's signature, IHDR and a scrap of IDAT: its size is known before any decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bmp_header(width: int, height: int) -> bytes:
    """A BMP that declares width x height 1-bit pixels and holds almost none of them."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 1, 0, 0, 2835, 2835, 2, 0)
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    offset = 14 + len(info) + len(palette)
    head = struct.pack("<2sIHHI", b"BM", offset + 64, 0, 0, offset)
    return head + info + palette + bytes(64)


def has_traceback(text: str) -> bool:
    return any(mark in text for mark in TRACEBACK_MARKS)
