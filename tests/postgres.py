"""A throwaway PostgreSQL server for the tests: `initdb` + `pg_ctl` in a temp dir, 127.0.0.1 only.

One server per test process (each xdist worker starts its own); every test gets a database of
its own, copied from a migrated template (`CREATE DATABASE ... TEMPLATE`: 0.05 s here, against
0.2 s to create and migrate one). Missing binaries or driver fail the test with the install
command: a PostgreSQL case must never pass by being skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from db import migrate
from db.engine import make_engine

INSTALL = "run `scripts/setup.sh --tests` (it installs Debian's postgresql and psycopg)"
TEMPLATE = "labeler_template"
DEBIAN = Path("/usr/lib/postgresql")  # Debian's server binaries: N/bin, not on PATH
_SETTINGS = {  # a throwaway server: durability off, loopback TCP only, no Unix socket
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}


def server_binaries() -> Path:
    """The folder with initdb and pg_ctl: PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    found = [p.parent for p in DEBIAN.glob("*/bin/initdb")]
    found = [p for p in found if (p / "pg_ctl").is_file() and p.parent.name.isdigit()]
    if not found:
        pytest.fail(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL}")
    return max(found, key=lambda p: int(p.parent.name))


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail(f"the PostgreSQL driver psycopg is not installed: {INSTALL}")


def _as_owner(argv: list[str]) -> list[str]:
    """initdb refuses to run as root: as root, the server runs as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str]) -> None:
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"{Path(argv[0]).name} failed: {(done.stderr or done.stdout).strip()}")


@dataclass
class PostgresServer:
    """A running server and its superuser's admin engine (autocommit: CREATE DATABASE)."""

    port: int
    pid: int
    _names: Iterator[int] = field(default_factory=itertools.count)
    _admin: Engine | None = None
    _dropping: list[threading.Thread] = field(default_factory=list)
    _strategy: str = ""

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def admin(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(
                self.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
            )
        return self._admin

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database (a copy of the migrated template, or empty); returns its URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        template = f" TEMPLATE {TEMPLATE}{self._strategy}" if migrated else ""
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}{template}"))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Dropped with its connections (FORCE: a test's leftover pools must not keep it), in
        the background: the server waits ~0.1 s for those backends to go, the next test need not.
        """
        name = url.rsplit("/", 1)[1]
        thread = threading.Thread(target=self._drop, args=(name,), daemon=True)
        thread.start()
        self._dropping.append(thread)

    def _drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def close(self) -> None:
        """Wait for the drops under way, then close the admin engine."""
        for thread in self._dropping:
            thread.join(30)
        if self._admin is not None:
            self._admin.dispose()

    def make_template(self) -> None:
        """Migrate once into the template every test database is copied from. From PostgreSQL
        15 on, copies are FILE_COPY: the default writes each 8 MB copy into the WAL as well."""
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {TEMPLATE}"))
            version = int(conn.scalar(text("SHOW server_version_num")) or 0)
        self._strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""
        engine = make_engine(self.url(TEMPLATE))
        migrate.upgrade(engine)
        engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template without connections


def _start(bin_dir: Path, data: Path, log: Path) -> PostgresServer:
    """pg_ctl start on a free port; a port taken meanwhile (another worker) is tried again."""
    for _ in range(3):
        port = _free_port()
        pg_ctl = [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l"]
        started = subprocess.run(
            _as_owner([*pg_ctl, str(log), "-o", f"-p {port}"]),
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode == 0:
            pid = int((data / "postmaster.pid").read_text().split()[0])
            return PostgresServer(port=port, pid=pid)
    pytest.fail(f"PostgreSQL did not start: {log.read_text()[-2000:]}")


def _alive(pid: int) -> bool:
    """Running, not a zombie: pg_ctl's server is nobody's child here, and PID 1 may not reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(pid: int, timeout: float = 30.0) -> None:
    """Immediate shutdown by pid (SIGQUIT: nothing to keep, its files are deleted next), SIGKILL
    if it is still there after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A new server with a migrated template; stopped by its pid and deleted on exit."""
    bin_dir = server_binaries()
    _require_driver()
    base = Path(tempfile.mkdtemp(prefix="labeler-pg-"))  # /tmp: the postgres user reaches it
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "server.log"
    server: PostgresServer | None = None
    try:
        initdb = [str(bin_dir / "initdb"), "-U", "postgres", "--auth=trust", "--no-sync"]
        _run([*initdb, "--no-locale", "-E", "UTF8", "-D", str(data)])
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in _SETTINGS.items())
        server = _start(bin_dir, data, log)
        server.make_template()
        yield server
    finally:
        if server is not None:
            server.close()
            _stop(server.pid)
        shutil.rmtree(base, ignore_errors=True)
