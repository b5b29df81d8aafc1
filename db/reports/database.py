"""The dashboard's connection (read-only) and whether the database has anything to show."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db import migrate
from db.engine import postgres_engine
from db.models import Image


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        database = database.removeprefix("file:")
        if database.startswith(":memory:") or parsed.query.get("mode") == "memory":
            return None
    return Path(database).expanduser()


def readonly_engine(url: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """An engine that cannot write: the dashboard must never change the loop's database.

    SQLite opens with `mode=ro` (and `query_only` on top); a missing file is not created.
    PostgreSQL sessions start with `default_transaction_read_only`, so the server refuses every
    write, whoever begins the transaction; other backends are only never written to.
    """
    parsed = make_url(url)
    path = sqlite_file(url)
    if parsed.get_backend_name() == "postgresql":
        return postgres_engine(parsed, options="-c default_transaction_read_only=on")
    if path is None:
        return create_engine(url)
    query = {k: v for k, v in parsed.query.items() if k not in ("mode", "uri")}
    readonly = parsed.set(
        database=f"file:{quote(str(path.resolve()))}", query={**query, "mode": "ro", "uri": "true"}
    )
    engine = create_engine(readonly, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return engine


class DatabaseState(StrEnum):
    MISSING = "missing"
    UNINITIALISED = "uninitialised"
    OUTDATED = "outdated"
    EMPTY = "empty"
    READY = "ready"


@dataclass(frozen=True)
class DatabaseStatus:
    state: DatabaseState
    revision: str | None
    head: str
    images: int = 0


def database_status(*, url: str, engine: Engine) -> DatabaseStatus:
    """Whether there is anything to show, so the dashboard can say what to run instead of failing.

    Reads only: a missing SQLite file is reported, not created, and the schema is never migrated.
    """
    head = migrate.head_revision()
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return DatabaseStatus(DatabaseState.MISSING, None, head)
    revision = migrate.current_revision(engine)
    if revision is None:
        return DatabaseStatus(DatabaseState.UNINITIALISED, None, head)
    if revision != head:
        return DatabaseStatus(DatabaseState.OUTDATED, revision, head)
    with Session(engine) as session:
        images = int(session.scalar(select(func.count(Image.id))) or 0)
    state = DatabaseState.READY if images else DatabaseState.EMPTY
    return DatabaseStatus(state, revision, head, images)
