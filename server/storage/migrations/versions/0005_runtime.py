"""LangGraph's runtime: a run's context and assistant; assistants and their versions.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _settings() -> list[sa.Column[str]]:
    """The saved settings of an assistant's version (and of its live one)."""
    return [
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("config_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("context_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("metadata_json", sa.Text, nullable=False, server_default="{}"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("context_json", sa.Text, nullable=True))
        batch.add_column(sa.Column("assistant_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("assistant_version", sa.Integer, nullable=True))
    op.create_table(
        "assistants",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("assistant_id", sa.String(128), primary_key=True),
        sa.Column("graph_id", sa.String(128), nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        *_settings(),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_assistants_owner_created", "assistants", ["owner", "created_at"])
    op.create_table(
        "assistant_versions",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("assistant_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("graph_id", sa.String(128), nullable=False),
        *_settings(),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("assistant_versions")
    op.drop_index("ix_assistants_owner_created", table_name="assistants")
    op.drop_table("assistants")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("assistant_version")
        batch.drop_column("assistant_id")
        batch.drop_column("context_json")
