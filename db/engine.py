"""Engine and sessions: SQLite gets WAL, a busy timeout and foreign keys; PostgreSQL gets psycopg 3
and pooled connections checked before use; other URLs as given."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import BadInputError


class DriverMissingError(BadInputError):
    """The URL names a database whose Python driver is not installed."""


def make_engine(url: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """Create an engine; any SQLAlchemy URL works, SQLite is tuned for one writer, many readers."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return postgres_engine(parsed)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def postgres_engine(url: URL, *, options: str = "") -> Engine:
    """PostgreSQL through psycopg 3 (a bare `postgresql://` would mean psycopg2, which is not
    installed). Pooled connections are checked before use: a restarted server or a firewall's
    idle timeout leaves dead ones. `options`: server settings for every session (`-c k=v`),
    after any the URL gives; the URL's own `application_name` wins over `labeler`."""
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    query = {k: str(v) for k, v in url.query.items()}
    both = " ".join(o for o in (query.get("options", ""), options) if o)
    connect_args = {"application_name": "labeler", **query, **({"options": both} if both else {})}
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except ModuleNotFoundError as exc:
        raise DriverMissingError(
            f"the database URL needs the Python driver {exc.name}, which is not installed "
            "(postgresql+psycopg: pip install -e '.[postgres]')"
        ) from None


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class DatabaseProblem(StrEnum):
    """Why a database call failed, when the cause is the file, not the code."""

    UNUSABLE = "unusable"  # not a database, corrupt pages, cannot be opened
    FULL = "full"  # no space left for the database or its journal
    UNREACHABLE = "unreachable"  # a database server that refused or never answered the connection


# SQLite primary result codes (the low byte of an extended code).
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26
_NEARLY_FULL_BYTES = 1 << 20
_PROBLEMS = {
    _SQLITE_CORRUPT: DatabaseProblem.UNUSABLE,
    _SQLITE_NOTADB: DatabaseProblem.UNUSABLE,
    _SQLITE_CANTOPEN: DatabaseProblem.UNUSABLE,
    _SQLITE_FULL: DatabaseProblem.FULL,
}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the driver error SQLAlchemy wraps, and what it was raised from."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = current.orig if isinstance(current, DBAPIError) else None
        todo += [current.__context__, current.__cause__, orig]


def database_problem(
    exc: BaseException, *, db_file: Path | None = None
) -> tuple[DatabaseProblem, str] | None:
    """(problem, SQLite's own words) when `exc` comes from a broken or full database file.

    SQLite reports a full disk as SQLITE_FULL on a write, but as a "disk I/O error" when its
    shared-memory file cannot grow; given `db_file`, an I/O error on a nearly full disk is FULL.
    Anything else (a bug, a lock timeout, a constraint) is None: its caller keeps the traceback.
    """
    for cause in _causes(exc):
        if _connection_failed(cause):
            return DatabaseProblem.UNREACHABLE, str(cause).strip().splitlines()[0]
        code = getattr(cause, "sqlite_errorcode", None)
        if isinstance(cause, sqlite3.Error) and isinstance(code, int):
            words = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            if code & 0xFF == _SQLITE_IOERR:
                full = db_file is not None and _nearly_full(db_file.parent)
                return (DatabaseProblem.FULL if full else DatabaseProblem.UNUSABLE), words
            problem = _PROBLEMS.get(code & 0xFF)
            if problem is not None:
                return problem, words
    return None


def _connection_failed(cause: BaseException) -> bool:
    """A server database's driver failing to connect: an OperationalError without an SQLSTATE
    (a statement the server refused has one). psycopg is not imported: it may not be installed."""
    kind = type(cause)
    return (
        kind.__module__.split(".")[0] in ("psycopg", "psycopg2")
        and any(k.__name__ == "OperationalError" for k in kind.__mro__)
        and getattr(cause, "sqlstate", getattr(cause, "pgcode", None)) is None
    )


def _nearly_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL_BYTES
