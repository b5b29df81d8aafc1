"""Label Studio tasks (image + round -> task id) and stored webhook events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 19:18:15.389066
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "studio_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("ls_project_id", sa.Integer(), nullable=True),
        sa.Column("ls_task_id", sa.Integer(), nullable=True),
        sa.Column("ls_annotation_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studio_events")),
    )
    with op.batch_alter_table("studio_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studio_events_action"), ["action"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_studio_events_processed_at"), ["processed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_studio_events_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "studio_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("ls_project_id", sa.Integer(), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_studio_tasks_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_studio_tasks_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studio_tasks")),
        sa.UniqueConstraint(
            "image_id",
            "round",
            "ls_project_id",
            name=op.f("uq_studio_tasks_image_id_round_ls_project_id"),
        ),
        sa.UniqueConstraint("ls_task_id", name=op.f("uq_studio_tasks_ls_task_id")),
    )
    with op.batch_alter_table("studio_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studio_tasks_image_id"), ["image_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("studio_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studio_tasks_image_id"))

    op.drop_table("studio_tasks")
    with op.batch_alter_table("studio_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studio_events_received_at"))
        batch_op.drop_index(batch_op.f("ix_studio_events_processed_at"))
        batch_op.drop_index(batch_op.f("ix_studio_events_action"))

    op.drop_table("studio_events")
