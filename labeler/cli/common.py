"""What every command shares: the app context, errors, and --json output."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from labeler.context import AppContext

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


def emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        for line in lines:
            typer.echo(line)
