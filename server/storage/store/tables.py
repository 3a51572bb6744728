"""Tables of the long-term Store (LangGraph's `BaseStore`), on the same metadata as sessions and runs.

- `store_items`: one row per item of a tenant (`owner`), keyed by the namespace
  (its labels joined by '.', which labels may not contain) and the key. The
  value is JSON text; times are seconds since the epoch (UTC), as elsewhere in
  the schema. `ttl_minutes` is the item's time to live, `expires_at` the moment
  it lapses (refreshed on reads when asked); the sweeper deletes lapsed rows.
- `store_vectors`: one embedding per item and indexed field (a field whose
  path matches several texts has one row per text), as float32 bytes, for the
  exact-scan vector index (vectors.py).

Namespace columns sort bytewise (PostgreSQL: collation "C"; SQLite's default is
already binary), so a namespace prefix is a range: `'a.b.' <= namespace < 'a.b/'`.
No foreign keys (see schema.py): deleting an item deletes its vectors explicitly.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from stepstream.server.storage.schema import metadata


def namespace_type() -> sa.types.TypeEngine[str]:
    """Text that compares bytewise on every back end (the migration uses the same type)."""
    return sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


store_items = sa.Table(
    "store_items",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("namespace", namespace_type(), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("ttl_minutes", sa.Float, nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Index("ix_store_items_expires_at", "expires_at"),
)

store_vectors = sa.Table(
    "store_vectors",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("namespace", namespace_type(), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    # The indexed path ("$", "text", "tags[*]" as "tags[*].0", ...), after LangGraph's naming.
    sa.Column("field", sa.Text, primary_key=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
)
