"""Typed version metrics: model_versions.metrics stores core.results' VersionMetrics (schema 1).

A detector version's flat `val_*` keys become `val` (a ValidationSummary) and its
`birads4_threshold*` keys `birads4_threshold` (value, chosen_from, n_images). An encoder version's
held-out scores move under `scores`, beside its training recipe. Each carries `kind`
("detector" or "encoder", from the row's kind). A row with no metrics (`{}`) becomes JSON
null (the column stays NOT NULL: changing that would copy a table other tables refer to).
The sealed folders' version.json files are not rewritten: nothing reads their metrics back.

The conversions are written out here, not imported from core.results: a migration must keep
converting the shape of its own day after the models change again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 14:30:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENCODER_KIND = "encoder"
VAL_KEYS = ("map50", "map50_95", "lesion_recall50", "fp_per_image", "screening_acc")
THRESHOLD = (("value", "birads4_threshold"), ("chosen_from", "birads4_threshold_from"))
RECIPE = ("method", "held_out", "n_train_images", "n_train_lesions", "losses", "train_seconds")
RECIPE_DEFAULTS: dict[str, Any] = {"method": "", "held_out": "", "losses": [], "train": {}}

model_versions = sa.table(
    "model_versions",
    sa.column("id", sa.String),
    sa.column("kind", sa.String),
    sa.column("metrics", sa.JSON),
)


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(model_versions.c.id, model_versions.c.kind, model_versions.c.metrics)
    ).all()
    for row_id, kind, metrics in rows:
        new = typed_version(kind, metrics or {})
        bind.execute(
            model_versions.update().where(model_versions.c.id == row_id).values(metrics=new)
        )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(model_versions.c.id, model_versions.c.metrics)).all()
    for row_id, metrics in rows:
        old = untyped_version(metrics)
        bind.execute(
            model_versions.update().where(model_versions.c.id == row_id).values(metrics=old)
        )


# --- schema 0 (flat dicts before 0007) -> schema 1 -------------------------------------------


def typed_version(kind: str, metrics: dict[str, Any]) -> dict[str, Any] | None:
    if not metrics:
        return None
    return _encoder(metrics) if kind == ENCODER_KIND else _detector(metrics)


def _detector(m: dict[str, Any]) -> dict[str, Any]:
    has_val = any(k.startswith("val_") for k in m)
    val = {k: m.get(f"val_{k}") for k in VAL_KEYS} | {"n_images": int(m.get("val_n_images", 0))}
    threshold = None
    if m.get("birads4_threshold") is not None:
        threshold = {new: m.get(old) for new, old in THRESHOLD}
        threshold["chosen_from"] = threshold["chosen_from"] or "default"
        threshold["n_images"] = int(m.get("birads4_threshold_n", 0))
    n = m.get("n_train_images")
    return {
        "schema_version": 1,
        "kind": "detector",
        "n_train_images": int(n) if n is not None else None,
        "val": val if has_val else None,
        "birads4_threshold": threshold,
    }


def _encoder(m: dict[str, Any]) -> dict[str, Any]:
    recipe = {k: m.get(k, RECIPE_DEFAULTS.get(k, 0)) for k in RECIPE}
    scores = {k: v for k, v in m.items() if k not in (*RECIPE, "train")} if "auc" in m else None
    return {
        "schema_version": 1,
        "kind": "encoder",
        **recipe,
        "train": m.get("train", {}),
        "scores": scores,
    }


# --- schema 1 -> schema 0 -------------------------------------------------------------------


def untyped_version(metrics: dict[str, Any] | None) -> dict[str, Any]:
    if metrics is None:
        return {}
    if metrics["kind"] == "encoder":
        recipe = {k: metrics[k] for k in (*RECIPE, "train")}
        return {**(metrics["scores"] or {}), **recipe}
    old: dict[str, Any] = {}
    if metrics["val"] is not None:
        old |= {f"val_{k}": v for k, v in metrics["val"].items()}
    threshold = metrics["birads4_threshold"]
    if threshold is not None:
        old |= {o: threshold[n] for n, o in THRESHOLD}
        old["birads4_threshold_n"] = threshold["n_images"]
    if metrics["n_train_images"] is not None:
        old["n_train_images"] = metrics["n_train_images"]
    return old
