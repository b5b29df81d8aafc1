"""Predictions record which parts produced them and the image's P(malignant).

predictions.produced_by (JSON, nullable) and predictions.malignancy (float, nullable).

It holds core.results.PrelabelSource (detector version, grader, calibrated, 4A/4B splitter).
Rows stored before this revision stay NULL: nobody knows which parts made them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("malignancy", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("produced_by", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("produced_by")
        batch_op.drop_column("malignancy")
