"""The long-term Store: items with TTLs, and their embeddings for semantic search.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _namespace() -> sa.types.TypeEngine[str]:
    # Bytewise order, so a namespace prefix is an index range (store/tables.py).
    return sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "store_items",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("namespace", _namespace(), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("ttl_minutes", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
    )
    op.create_index("ix_store_items_expires_at", "store_items", ["expires_at"])
    op.create_table(
        "store_vectors",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("namespace", _namespace(), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("field", sa.Text, primary_key=True),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_vectors")
    op.drop_index("ix_store_items_expires_at", table_name="store_items")
    op.drop_table("store_items")
