"""Simulated learning curves: one row per (simulation, round).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 20:36:45.307460
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "simulation_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("simulation", sa.String(length=120), nullable=False),
        sa.Column("strategy", sa.String(length=40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("reviews", sa.Integer(), nullable=False),
        sa.Column("labeled_images", sa.Integer(), nullable=False),
        sa.Column("accept_rate", sa.Double(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulation_points")),
        sa.UniqueConstraint(
            "simulation", "round", name=op.f("uq_simulation_points_simulation_round")
        ),
    )
    with op.batch_alter_table("simulation_points", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_simulation_points_simulation"), ["simulation"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("simulation_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_simulation_points_simulation"))

    op.drop_table("simulation_points")
