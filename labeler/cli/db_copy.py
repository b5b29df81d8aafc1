"""`labeler db copy --to URL`: move the loop's database into a new one (SQLite to PostgreSQL)."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from db.copy import copy_database
from db.engine import make_engine
from labeler.cli.common import JsonOpt, app_context, emit

ToOpt = Annotated[
    str,
    typer.Option(
        "--to",
        help="SQLAlchemy URL of an empty database, e.g. postgresql+psycopg://user:pw@host/db.",
    ),
]


def db_copy(ctx: typer.Context, to: ToOpt, as_json: JsonOpt = False) -> None:
    """Copy every table of this database into an empty one (migrated to the newest schema
    first); a target that holds any row is refused. Stop sync, import and retrain meanwhile."""
    app_ctx = app_context(ctx)
    app_ctx.require_schema()  # the source at the newest schema: the target gets that one
    target = make_engine(to)
    try:
        copied = copy_database(app_ctx.engine, target)
    finally:
        target.dispose()
    shown = make_url(to).render_as_string(hide_password=True)
    data = {"to": shown, "rows": dict(copied)}
    lines = [f"{name}: {rows}" for name, rows in copied]
    emit(data, as_json, [*lines, f"copied {sum(dict(copied).values())} rows to {shown}"])
