"""`labeler encoder ...`: train, pre-train and index the lesion encoder (ml_backend/encoder)."""

from __future__ import annotations

import typer

encoder_app = typer.Typer(
    help="Lesion encoder: train, self-supervised pre-training, similar-lesion index.",
    no_args_is_help=True,
)
