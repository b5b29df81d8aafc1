"""`labeler dashboard`: the Streamlit dashboard on this machine, reading the same database."""

from __future__ import annotations

import subprocess
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from labeler.cli.common import app_context
from labeler.services import app_path, streamlit_command

__all__ = ["app_path", "dashboard", "streamlit_command"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to listen on; the dashboard has no login.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8501,
) -> None:
    """Start the dashboard (read-only: progress, agreement, models, evaluation, images).

    It runs until Ctrl-C. It never writes the database, so it can run beside the loop.
    """
    settings = app_context(ctx).settings
    argv, env = streamlit_command(settings, host=host, port=port)  # no dashboards: exit 2
    database = make_url(settings.db_url).render_as_string(hide_password=True)
    typer.echo(f"dashboard on http://{host}:{port} reading {database} (Ctrl-C stops it)")
    if host not in LOOPBACK:
        typer.secho("warning: the dashboard has no login; anyone who reaches it sees it", err=True)
    try:
        code = subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
