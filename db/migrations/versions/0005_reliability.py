"""Reliability: held-back images and pixel text, set-aside webhook events, model checksums.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_reason", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("pixel_text", sa.JSON(), nullable=True))
    with op.batch_alter_table("studio_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checksums", sa.JSON(), nullable=True))
    # Images imported before this revision with BurnedInAnnotation=YES were sent to readers
    # with only a warning: hold them back now, like a new import would.
    op.execute(
        "UPDATE images SET held_reason = 'DICOM BurnedInAnnotation=YES' "
        "WHERE burned_in_annotation = true"
    )


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("checksums")
    with op.batch_alter_table("studio_events", schema=None) as batch_op:
        batch_op.drop_column("error")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("pixel_text")
        batch_op.drop_column("held_reason")
