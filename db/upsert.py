"""The database's own upsert (INSERT ... ON CONFLICT), one dialect switch for every caller.

Select-then-insert races: two writers both see "no row" and the second insert fails with an
IntegrityError. ON CONFLICT lets the database decide atomically, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

from core.errors import BadInputError


class UpsertUnsupportedError(BadInputError):
    """The database has no INSERT ... ON CONFLICT that this module knows."""


def insert_for(session: Session, model: type[DeclarativeBase] | Table) -> Any:
    """`insert(model)` of the session's dialect, with `.on_conflict_do_update/nothing`."""
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert(model)
    if name == "postgresql":
        return postgresql.insert(model)
    raise UpsertUnsupportedError(f"no ON CONFLICT upsert for the {name} dialect")


def added(session: Session, stmt: Any) -> bool:
    """Run an INSERT ... ON CONFLICT DO NOTHING; whether it added its row.

    With `preserve_rowcount`: SQLAlchemy fetches a new row's primary key through RETURNING on
    PostgreSQL and then reports a rowcount of -1 unless asked to keep the driver's count.
    """
    result = session.execute(stmt.execution_options(preserve_rowcount=True))
    return int(getattr(result, "rowcount", 0)) == 1


def insert_ignore(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str] | None = None,
) -> None:
    """Insert rows; a row that collides with an existing one (on `keys`, or any unique
    constraint when None) is left as it is."""
    if not rows:
        return
    stmt = insert_for(session, model).values([dict(r) for r in rows])
    session.execute(stmt.on_conflict_do_nothing(index_elements=keys))


def upsert(
    session: Session,
    model: type[DeclarativeBase],
    row: Mapping[str, Any],
    *,
    keys: Sequence[str],
    update: Callable[[Any], Mapping[str, Any]] | None = None,
) -> None:
    """Insert one row, or update the row with the same `keys`.

    `update(excluded)` maps a column to its new value on conflict (`excluded.c` is the value
    this insert proposed; the table's own columns are the stored row); None: every non-key
    column of `row` takes the proposed value.
    """
    stmt = insert_for(session, model).values(dict(row))
    excluded = stmt.excluded
    set_ = update(excluded) if update else {c: excluded[c] for c in row if c not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=set_))
