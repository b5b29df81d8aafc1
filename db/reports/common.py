"""Helpers every report shares: columnar results, UTC times, raw column values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import String, type_coerce

C = TypeVar("C")


def columnar(cls: type[C], rows: Sequence[Sequence[Any]]) -> C:
    """Rows -> a columnar result (one tuple per field, in field order); no rows: its empty default.

    Columns because results are cached by pickling, and 100k small objects pickle slowly.
    """
    return cls(*zip(*rows, strict=True)) if rows else cls()


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def raw(column: Any) -> Any:
    """A column as the driver returns it: on 100k rows SQLAlchemy's per-value conversion of
    datetimes and enums costs more than the query (SQLite keeps both as text)."""
    return type_coerce(column, String)


def day_of(value: object) -> str:
    """'YYYY-MM-DD' of a stored time: ISO text on SQLite, a datetime from other drivers."""
    return str(value)[:10]


def instant(value: object) -> datetime:
    return utc(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))
