"""Cancel requests for runs executing on another replica.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cancel_json", sa.Text, nullable=True))
    op.create_index("ix_runs_replica", "runs", ["replica"])


def downgrade() -> None:
    op.drop_index("ix_runs_replica", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancel_json")
