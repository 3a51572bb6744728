"""LangGraph checkpoints, channel-version blobs and pending writes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("checkpoint_ns", sa.Text, primary_key=True, server_default=""),
        sa.Column("checkpoint_id", sa.String(64), primary_key=True),
        sa.Column("parent_checkpoint_id", sa.String(64), nullable=True),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("checkpoint", sa.LargeBinary, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_checkpoints_run_id", "checkpoints", ["run_id"])
    op.create_table(
        "checkpoint_blobs",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("checkpoint_ns", sa.Text, primary_key=True, server_default=""),
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=True),
    )
    op.create_table(
        "checkpoint_writes",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("checkpoint_ns", sa.Text, primary_key=True, server_default=""),
        sa.Column("checkpoint_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("task_path", sa.Text, nullable=False, server_default=""),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("checkpoint_writes")
    op.drop_table("checkpoint_blobs")
    op.drop_index("ix_checkpoints_run_id", table_name="checkpoints")
    op.drop_table("checkpoints")
