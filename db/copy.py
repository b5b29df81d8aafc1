"""Copy every table of one database into another, empty one (`labeler db copy`: SQLite to
PostgreSQL), through the models' own column types, so the target reads back what the source did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, Table, exists, func, select, text
from sqlalchemy.exc import OperationalError

from core.errors import BadInputError, ExitCode, LabelerError
from db import migrate
from db.models import Base

BATCH_ROWS = 1000


class TargetNotEmptyError(BadInputError):
    """The target already holds rows: a copy never merges into or overwrites a database."""


class TargetSchemaError(BadInputError):
    """The target's schema is not the newest one this code writes."""


def copy_database(
    source: Engine, target: Engine, *, batch_rows: int = BATCH_ROWS
) -> list[tuple[str, int]]:
    """Copy every table, parents before children, in one target transaction (a failure leaves
    the target empty); returns (table, rows) in copy order. The target is migrated to the newest
    schema first if it has none, and refused if it holds any row."""
    _prepare_target(target)
    copied = []
    with source.connect() as src, target.begin() as dst:
        for table in Base.metadata.sorted_tables:
            copied.append((table.name, _copy_table(src, dst, table, batch_rows)))
        if dst.dialect.name == "postgresql":
            _fix_sequences(dst, Base.metadata.sorted_tables)
    return copied


def _prepare_target(target: Engine) -> None:
    """Reachable, at the newest schema (a new database is migrated here), and without a row:
    a copy never merges into existing data, whose ids would collide with the copied ones."""
    try:
        revision = migrate.current_revision(target)
    except OperationalError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        raise LabelerError(
            f"cannot open the target database: {first}", exit_code=ExitCode.DATABASE
        ) from None
    if revision is None:
        migrate.upgrade(target)
    elif revision != migrate.head_revision():
        raise TargetSchemaError(
            f"the target database is at revision {revision}, not {migrate.head_revision()}: "
            "copy into a new, empty database"
        )
    with target.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if conn.scalar(select(exists().select_from(table))):
                raise TargetNotEmptyError(
                    f"the target database is not empty (table {table.name} has rows): "
                    "copy only into a new, empty database"
                )


def _copy_table(src: Connection, dst: Connection, table: Table, batch_rows: int) -> int:
    """Rows in primary-key order, `batch_rows` per INSERT round trip."""
    stmt = select(table).order_by(*table.primary_key.columns)
    result = src.execution_options(stream_results=True, yield_per=batch_rows).execute(stmt)
    batches: Iterator[Sequence[Any]] = result.partitions(batch_rows)
    if _self_referencing(table):  # model_versions.parent_id: each row after its parent
        batches = iter([_parents_first(table, [row for b in batches for row in b])])
    stamps = [c.name for c in table.columns if isinstance(c.type, DateTime)]
    n = 0
    for batch in batches:
        rows = [_utc(dict(row._mapping), stamps) for row in batch]
        if rows:
            dst.execute(table.insert(), rows)
        n += len(rows)
    return n


def _utc(row: dict[str, Any], stamps: list[str]) -> dict[str, Any]:
    """SQLite gives back the naive UTC times it stores; PostgreSQL aware ones in its session's
    time zone. Both are written as aware UTC, so neither target shifts a time."""
    for name in stamps:
        value = row[name]
        if isinstance(value, datetime):
            row[name] = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return row


def _self_referencing(table: Table) -> bool:
    return any(fk.column.table is table for fk in table.foreign_keys)


def _parents_first(table: Table, rows: list[Any]) -> list[Any]:
    """Order rows so each comes after the row it references in its own table (the target checks
    foreign keys at each INSERT); rows whose parent never comes keep their order, last."""
    (fk,) = [fk for fk in table.foreign_keys if fk.column.table is table]
    key, parent = fk.column.name, fk.parent.name
    placed: set[Any] = set()
    ordered: list[Any] = []
    waiting = rows
    while waiting:
        ready = [r for r in waiting if r._mapping[parent] in placed or r._mapping[parent] is None]
        ready = ready or waiting
        ordered += ready
        placed |= {r._mapping[key] for r in ready}
        waiting = [r for r in waiting if r._mapping[key] not in placed]
    return ordered


def _fix_sequences(dst: Connection, tables: Sequence[Table]) -> None:
    """Rows came with their ids, so PostgreSQL's id sequences still stand at 1: move each to
    its table's largest id, or the next insert collides with a copied row."""
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        largest = dst.scalar(select(func.max(column)))
        dst.execute(
            text("SELECT setval(pg_get_serial_sequence(:table, :column), :value, :called)"),
            {
                "table": table.name,
                "column": column.name,
                "value": largest or 1,
                "called": largest is not None,
            },
        )
