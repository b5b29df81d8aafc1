"""Typed metrics: evaluations and simulation points store core.results' models (schema 1).

An evaluation's confusion matrices move into its metrics (each table holds its matrix), so the
`confusion_matrices` column goes. Rates are named acc/sen/spe, detection scores are grouped,
matrices drop their derived row-normalised copy. Rows written before the evaluator stored a
field (ROC, SEN@SPE80) keep it as null; a row missing a whole table gets an empty one.

The conversions are written out here, not imported from core.results: a migration must keep
converting the shape of its own day after the models change again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DETECTION = ("map50", "map50_95", "lesion_map50", "lesion_map50_95", "lesion_recall50")
DETECTION_KEYS = (*DETECTION, "fp_per_image")
RATES = (("acc", "ACC"), ("sen", "SEN"), ("spe", "SPE"))
SCREENING_EXTRAS = ("pathology_auc", "n_with_pathology")

evaluations = sa.table(
    "evaluations",
    sa.column("id", sa.Integer),
    sa.column("metrics", sa.JSON),
    sa.column("confusion_matrices", sa.JSON),
)
simulation_points = sa.table(
    "simulation_points", sa.column("id", sa.Integer), sa.column("metrics", sa.JSON)
)


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(evaluations.c.id, evaluations.c.metrics, evaluations.c.confusion_matrices)
    )
    for row_id, metrics, matrices in rows.all():
        new = typed_evaluation(metrics or {}, matrices or {})
        bind.execute(evaluations.update().where(evaluations.c.id == row_id).values(metrics=new))
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_column("confusion_matrices")
    for row_id, metrics in bind.execute(
        sa.select(simulation_points.c.id, simulation_points.c.metrics)
    ).all():
        new = {"schema_version": 1, **{k: (metrics or {}).get(k) for k in SIMULATION_KEYS}}
        new["version"] = str(new["version"] or "")
        bind.execute(
            simulation_points.update().where(simulation_points.c.id == row_id).values(metrics=new)
        )


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confusion_matrices", sa.JSON(), nullable=True))
    for row_id, metrics in bind.execute(sa.select(evaluations.c.id, evaluations.c.metrics)).all():
        old, matrices = untyped_evaluation(metrics)
        bind.execute(
            evaluations.update()
            .where(evaluations.c.id == row_id)
            .values(metrics=old, confusion_matrices=matrices)
        )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.alter_column("confusion_matrices", existing_type=sa.JSON(), nullable=False)
    for row_id, metrics in bind.execute(
        sa.select(simulation_points.c.id, simulation_points.c.metrics)
    ).all():
        old = {k: v for k, v in metrics.items() if k != "schema_version"}
        bind.execute(
            simulation_points.update().where(simulation_points.c.id == row_id).values(metrics=old)
        )


SIMULATION_KEYS = ("version", "map50", "lesion_map50", "auc", "acc", "sen", "spe")


# --- schema 0 (dicts of the evaluator before 0006) -> schema 1 ---------------------------------


def typed_evaluation(metrics: dict[str, Any], matrices: dict[str, Any]) -> dict[str, Any]:
    screening = metrics.get("screening") or {}
    new: dict[str, Any] = {
        "schema_version": 1,
        "n_images": int(metrics.get("n_images") or 0),
        "score_threshold": float(metrics.get("score_threshold", 0.5)),
        "detection": {k: metrics.get(k) for k in DETECTION_KEYS},
        "birads": {
            "matrix": _matrix(matrices.get("birads")),
            "per_category": {
                label: _rates(rates) for label, rates in (metrics.get("birads") or {}).items()
            },
        },
        "screening": {
            "plain_4_counted_as": screening.get("plain_4_counted_as", "malignant"),
            "matrix": _matrix(matrices.get("screening")),
            "rates": _rates(screening),
            "auc": screening.get("auc"),
            "sen_at_spe80": screening.get("sen_at_spe80"),
            "roc": screening.get("roc"),
            **{k: screening[k] for k in SCREENING_EXTRAS if k in screening},
        },
        "birads4_split": _split(metrics.get("birads4_split")),
        "split_manifest_sha256": metrics.get("split_manifest_sha256"),
    }
    return new


def _matrix(payload: Any, counts: str = "counts") -> dict[str, Any]:
    if not isinstance(payload, dict) or counts not in payload:
        return {"labels": [], "counts": []}
    return {"labels": list(payload["labels"]), "counts": payload[counts]}


def _rates(payload: Any) -> dict[str, Any]:
    payload = payload if isinstance(payload, dict) else {}
    return {new: payload.get(old) for new, old in RATES}


def _split(payload: Any) -> dict[str, Any] | None:
    if not isinstance(payload, dict):
        return None
    return {
        "matrix": _matrix(payload, "confusion_matrix"),
        "positive": payload.get("positive", "4B"),
        "rates": _rates(payload),
        "threshold": payload.get("threshold"),
        "n_images": payload.get("n_images"),
        "splits": list(payload.get("splits") or []),
    }


# --- schema 1 -> schema 0 -------------------------------------------------------------------


def untyped_evaluation(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    screening = metrics["screening"]
    old_screening = {
        "plain_4_counted_as": screening["plain_4_counted_as"],
        **_old_rates(screening["rates"]),
        "auc": screening["auc"],
        "sen_at_spe80": screening["sen_at_spe80"],
        "roc": screening["roc"],
        **{k: screening[k] for k in SCREENING_EXTRAS if screening.get(k) is not None},
    }
    old: dict[str, Any] = {
        "n_images": metrics["n_images"],
        "score_threshold": metrics["score_threshold"],
        **metrics["detection"],
        "birads": {
            label: _old_rates(rates) for label, rates in metrics["birads"]["per_category"].items()
        },
        "screening": old_screening,
        "birads4_split": _old_split(metrics.get("birads4_split")),
    }
    if metrics.get("split_manifest_sha256") is not None:
        old["split_manifest_sha256"] = metrics["split_manifest_sha256"]
    matrices = {
        "birads": _old_matrix(metrics["birads"]["matrix"]),
        "screening": _old_matrix(screening["matrix"]),
    }
    return old, matrices


def _old_rates(rates: dict[str, Any]) -> dict[str, Any]:
    return {old: rates.get(new) for new, old in RATES}


def _old_matrix(matrix: dict[str, Any]) -> dict[str, Any]:
    counts = matrix["counts"]
    rows = [[c / sum(row) if sum(row) else 0.0 for c in row] for row in counts]
    return {"labels": matrix["labels"], "counts": counts, "row_normalised": rows}


def _old_split(split: dict[str, Any] | None) -> dict[str, Any] | None:
    if split is None:
        return None
    return {
        "labels": split["matrix"]["labels"],
        "confusion_matrix": split["matrix"]["counts"],
        "positive": split["positive"],
        **_old_rates(split["rates"]),
        "threshold": split["threshold"],
        "n_images": split["n_images"],
        "splits": split["splits"],
    }
