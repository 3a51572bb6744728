"""The inspector: replica heartbeat rows, and an index on runs for recent ends and failures.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("interval_s", sa.Float, nullable=False),
        sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("running", sa.Integer, nullable=False, server_default="0"),
        sa.Column("leases", sa.Integer, nullable=False, server_default="0"),
        sa.Column("graphs_json", sa.Text, nullable=False, server_default="[]"),
    )
    op.create_index("ix_runs_status_ended", "runs", ["status", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_ended", table_name="runs")
    op.drop_table("replicas")
