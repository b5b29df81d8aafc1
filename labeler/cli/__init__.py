"""`labeler`: the command line. Thin: each command parses, calls one function, prints.

Commands live by resource (data.py, models.py) and are registered here, explicitly.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from core.settings import Settings
from labeler.cli import dashboard, data, db_copy, loop, models, optimize, similar, studio
from labeler.cli.common import LabelerGroup, fail
from labeler.cli.encoder import encoder_app
from labeler.cli.images import images_app
from labeler.context import AppContext
from labeler.exiting import exit_code, finish

# Commands that never touch torch skip importing it (about 2 CPU-seconds a start). Every other
# command flushes denormals to zero first (ml_backend/runtime.py): random-init models produce
# them, and they slowed CPU steps 2-8x.
WITHOUT_TORCH = frozenset({"init", "import", "status", "db", "sync"})

app = typer.Typer(
    cls=LabelerGroup,
    help="Human-in-the-loop BI-RADS labeling of breast ultrasound.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema migrations and copies.", no_args_is_help=True)
models_app = typer.Typer(
    help="Registered model versions: list, verify, promote, roll back, export, import, optimize.",
    no_args_is_help=True,
)
studio_app = typer.Typer(
    help="Label Studio: review project, task push, status.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(studio_app, name="studio")
app.add_typer(models_app, name="models")
app.add_typer(encoder_app, name="encoder")
app.add_typer(images_app, name="images")

app.command()(data.init)
app.command("import")(data.import_)
app.command()(data.status)
app.command()(data.demo)
db_app.command("upgrade")(data.db_upgrade)
db_app.command("downgrade")(data.db_downgrade)
db_app.command("current")(data.db_current)
db_app.command("copy")(db_copy.db_copy)
app.command()(models.train)
app.command()(models.evaluate)
app.command()(models.predict)
models_app.command("list")(models.models_list)
models_app.command("verify")(models.models_verify)
models_app.command("promote")(models.models_promote)
models_app.command("rollback")(models.models_rollback)
models_app.command("export")(models.models_export)
models_app.command("import")(models.models_import)
models_app.command("optimize")(optimize.models_optimize)
app.command()(studio.serve)
app.command()(dashboard.dashboard)
app.command()(loop.retrain)
app.command()(loop.simulate)
app.command()(studio.sync)
app.command()(similar.similar)
encoder_app.command("index")(similar.encoder_index)
studio_app.command("setup")(studio.studio_setup)
studio_app.command("config")(studio.studio_config)
studio_app.command("logins")(studio.studio_logins)
studio_app.command("push")(studio.studio_push)
studio_app.command("status")(studio.studio_status)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        raise fail(f"invalid settings: {exc}") from None
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = AppContext(settings)
    if ctx.invoked_subcommand not in WITHOUT_TORCH:
        from ml_backend.runtime import flush_denormals  # imports torch

        flush_denormals()  # once for the process, before any model work starts a thread


def run() -> None:
    """The `labeler` console script and `python -m labeler.cli`: the app, named `labeler`.

    Errors are handled once, in `LabelerGroup.invoke`, so CliRunner tests see the same codes.
    The process then ends without the interpreter's teardown (labeler.exiting).
    """
    try:
        app(prog_name="labeler")
    except SystemExit as exc:
        finish(exit_code(exc))
