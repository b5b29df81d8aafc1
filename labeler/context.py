"""Settings -> engine -> sessions, built once per CLI invocation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.errors import BadInputError
from core.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory


class DatabaseNotReadyError(BadInputError):
    pass


@dataclass(frozen=True)
class AppContext:
    """One invocation's settings and database handles. Frozen, and nothing assigns to the
    settings: a command that needs other values builds a copy (`settings.model_copy(update=...)`)
    so every part of the run sees the same configuration."""

    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(
            self.settings.db_url, busy_timeout_ms=self.settings.sqlite_busy_timeout_ms
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    def ensure_schema(self) -> str:
        """Bring the schema to head (idempotent); writing commands call this first."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(self.engine)
        return migrate.head_revision()

    def require_schema(self) -> None:
        """Reading commands never migrate: they say what to run instead."""
        current = migrate.current_revision(self.engine)
        if current != migrate.head_revision():
            state = "is not initialised" if current is None else f"is at revision {current}"
            raise DatabaseNotReadyError(
                f"the database {state}; run `labeler init` (or `labeler demo`) first"
            )
