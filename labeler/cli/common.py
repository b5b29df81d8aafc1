"""What every command shares: the app context, errors, and --json output.

`LabelerGroup` is the CLI's one error handler, and commands catch nothing themselves: an
expected failure (a `LabelerError`, a corrupt database, a full disk) becomes one line on stderr
and its exit code, plus `{"error": ..., "exit_code": ...}` on stdout under `--json`; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click import Context as ClickContext  # typer >= 0.24 vendors its own click
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from core.errors import ExitCode, LabelerError
from db.engine import DatabaseProblem, database_problem
from labeler.context import AppContext

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
_AS_JSON: ContextVar[bool] = ContextVar("labeler_as_json", default=False)  # set per invocation
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj


def fail(message: str, code: int = 2) -> typer.Exit:
    say_error(message, code)
    return typer.Exit(code)


def say_error(message: str, code: int) -> None:
    """One line on stderr; under --json also an error object on stdout, so it stays JSON."""
    line = " ".join(message.split())
    typer.secho(f"error: {line}", fg="red", err=True)
    if _AS_JSON.get():
        typer.echo(json.dumps({"error": line, "exit_code": int(code)}))


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT behind `exc`, also when a library re-raised it as something else."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return current
        todo += [c for c in (current.__cause__, current.__context__) if c is not None]
    return None


def expected_failure(
    exc: BaseException, *, db_file: Path | None = None
) -> tuple[str, ExitCode] | None:
    """The one line and exit code of a failure the user can act on; None for a bug.

    Our own expected failures are all `LabelerError`s (core/errors.py holds the kinds). The
    database and the disk are the two kinds raised from below us (SQLite, the OS), recognised
    here by what they are, never by a broad exception type.
    """
    if isinstance(exc, LabelerError):
        return str(exc), exc.exit_code
    found = database_problem(exc, db_file=db_file)
    if found is not None and found[0] is DatabaseProblem.UNREACHABLE:
        return (
            f"the database server cannot be reached ({found[1]}): check LABELER_DB_URL and that "
            "the server is up; nothing was changed",
            ExitCode.DATABASE,
        )
    if found is not None and found[0] is DatabaseProblem.UNUSABLE:
        return (
            f"the database cannot be used ({found[1]}): restore it from a backup, or move it "
            "aside and run `labeler init` to start a new one",
            ExitCode.DATABASE,
        )
    full = _disk_full(exc)
    if full is not None or found is not None:
        why = full.strerror if full is not None and full.strerror else "database or disk is full"
        return (
            f"no space left to write ({why}): free space under LABELER_HOME and run it again; "
            "finished work is kept",
            ExitCode.DISK_FULL,
        )
    return None


class LabelerGroup(TyperGroup):
    """The root command: remembers --json, and turns expected failures into one line."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        _AS_JSON.set(_has_json_flag(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise  # the command already said what went wrong
        except ClickException as exc:  # usage errors and the like: click prints them
            if _AS_JSON.get():
                typer.echo(json.dumps({"error": exc.format_message(), "exit_code": exc.exit_code}))
            raise
        except Exception as exc:
            found = expected_failure(exc, db_file=_db_file(ctx))
            if found is None:
                raise  # a bug: its traceback is what a maintainer needs
            say_error(*found)
            raise typer.Exit(found[1]) from None


def _db_file(ctx: ClickContext) -> Path | None:
    from db.reports.database import sqlite_file

    obj = ctx.obj
    return sqlite_file(obj.settings.db_url) if isinstance(obj, AppContext) else None


def _has_json_flag(args: Sequence[str]) -> bool:
    before = args[: list(args).index("--")] if "--" in args else args
    return "--json" in before


def emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        for line in lines:
            typer.echo(line)
