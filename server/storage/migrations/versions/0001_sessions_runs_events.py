"""Sessions, runs and run events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("graph_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metadata_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sessions_owner_created", "sessions", ["owner", "created_at"])
    op.create_index("ix_sessions_updated", "sessions", ["updated_at"])
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("graph_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_json", sa.Text, nullable=True),
        sa.Column("command_json", sa.Text, nullable=True),
        sa.Column("options_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("values_json", sa.Text, nullable=True),
        sa.Column("interrupts_json", sa.Text, nullable=True),
        sa.Column("error_type", sa.String(256), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("replica", sa.String(256), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("trace_context", sa.Text, nullable=True),
    )
    op.create_index("ix_runs_session_created", "runs", ["session_id", "created_at"])
    op.create_index("ix_runs_owner_created", "runs", ["owner", "created_at"])
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at"])
    op.create_index(
        "ux_runs_one_running_per_session",
        "runs",
        ["session_id"],
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_run_events_session", "run_events", ["session_id"])


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("runs")
    op.drop_table("sessions")
