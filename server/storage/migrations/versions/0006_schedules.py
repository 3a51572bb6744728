"""Crons, cron fire records, webhook deliveries and webhook signing secrets.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crons",
        sa.Column("cron_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=True),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("next_fire_at", sa.Float, nullable=True),
        sa.Column("anchor_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_crons_next_fire", "crons", ["next_fire_at"])
    op.create_index("ix_crons_owner_created", "crons", ["owner", "created_at"])
    op.create_table(
        "cron_fires",
        sa.Column("cron_id", sa.String(64), primary_key=True),
        sa.Column("due_at", sa.Float, primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("session_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("replica", sa.String(256), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )
    op.create_index("ix_cron_fires_outcome_lease", "cron_fires", ["outcome", "lease_expires_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("destination", sa.String(512), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("replica", sa.String(256), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_owner_created", "webhook_deliveries", ["owner", "created_at"])
    op.create_index("ix_webhook_deliveries_run", "webhook_deliveries", ["run_id"])
    op.create_table(
        "webhook_secrets",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.Float, primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
    op.drop_table("webhook_deliveries")
    op.drop_table("cron_fires")
    op.drop_table("crons")
