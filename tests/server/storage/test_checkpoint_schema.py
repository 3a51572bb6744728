"""Migration 0002 builds exactly the tables checkpoint_tables.py declares; SQL renders for PostgreSQL."""

from __future__ import annotations

import pathlib
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from stepstream.server.storage import (
    checkpoint_maintenance,
    checkpoint_reads,
    checkpoint_sql,
    checkpoint_tables,
    schema,
)
from stepstream.server.storage.db import upgrade


def test_migrations_match_the_declared_tables(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "schema.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes"} <= tables
    assert checkpoint_tables.checkpoints.metadata is schema.metadata


def test_statements_render_for_postgresql() -> None:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    stmts = checkpoint_sql.Statements.for_dialect("postgresql")
    for stmt in (stmts.upsert_checkpoint, stmts.insert_blob, stmts.upsert_write, stmts.insert_write):
        assert "ON CONFLICT" in str(stmt.compile(dialect=dialect))  # type: ignore[attr-defined]
    for stmt in stmts.copy_thread:
        assert "INSERT INTO" in str(stmt.compile(dialect=dialect))  # type: ignore[attr-defined]
    thread: Any = {"configurable": {"thread_id": "t"}}
    query = checkpoint_reads.search("postgresql", thread, {"source": "loop"}, None)
    assert "@>" in str(query.page(("x", "y"), 10).compile(dialect=dialect))
    for delete in (checkpoint_maintenance._DELETE_BLOB, checkpoint_maintenance._DELETE_CHECKPOINT):
        assert "DELETE FROM" in str(delete.compile(dialect=dialect))
