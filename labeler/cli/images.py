"""`labeler images`: images held back from Label Studio (burned-in PHI) and their release."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer

from db.queries import events as event_queries
from db.queries import phi as phi_queries
from labeler.cli.common import JsonOpt, app_context, emit

images_app = typer.Typer(
    help="Images held back from Label Studio (burned-in PHI): list, release.",
    no_args_is_help=True,
)


def _actor() -> str:
    """Who released it, for the audit trail: the login, never anything about the patient."""
    try:
        return os.environ.get("USER") or getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "unknown"


@images_app.command("held")
def held(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the images held back from Label Studio, with why."""
    app_ctx = app_context(ctx)
    app_ctx.require_schema()  # not ready: one line and exit code 2 (a LabelerError)
    with app_ctx.sessions() as session:
        rows = phi_queries.held_images(session)
    data = {
        "held": [
            {
                "image_id": h.image_id,
                "dataset": h.dataset,
                "reason": h.reason,
                "text_regions": h.text_regions,
            }
            for h in rows
        ]
    }
    lines = [
        f"image {h.image_id} ({h.dataset}): {h.reason}; text regions found: "
        + ("not checked" if h.text_regions is None else str(h.text_regions))
        for h in rows
    ] or ["no images are held back"]
    emit(data, as_json, lines)


@images_app.command("release")
def release(
    ctx: typer.Context,
    image_id: Annotated[int, typer.Argument(min=1, help="The image id (`labeler images held`).")],
    as_json: JsonOpt = False,
) -> None:
    """Release a held image: a person has checked its pixels; the next push sends it to readers.

    The release is recorded in the audit trail with the releasing user ($USER).
    """
    app_ctx = app_context(ctx)
    app_ctx.require_schema()  # not ready: one line and exit code 2 (a LabelerError)
    actor = _actor()
    with app_ctx.sessions.begin() as session:
        reason = phi_queries.release_image(session, image_id=image_id)  # unknown id: exit 2
        if reason is not None:
            event_queries.record_event(
                session,
                actor=actor,
                action="image release",
                subject=f"image:{image_id}",
                detail={"held_reason": reason},
            )
    data = {
        "image_id": image_id,
        "released": reason is not None,
        "was_held_for": reason,
        "by": actor,
    }
    line = (
        f"image {image_id} released by {actor}; `labeler studio push` sends it to the readers"
        if reason is not None
        else f"image {image_id} was not held; nothing to do"
    )
    emit(data, as_json, [line])
