"""Engine creation and schema migration for every back end."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent / "migrations"


def is_sqlite(url: str) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL: readers never block the writer; NORMAL: durable at each checkpoint of the WAL.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def async_url(url: str) -> str:
    """`url` with an async driver: a bare `postgresql://` (or `postgres://`) URL gets asyncpg."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    return url


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so readers never block the writer.

    PostgreSQL goes through asyncpg (`postgresql://` URLs are given it); its pool is sized for
    a replica's group-commit writer, readers and the core's own queries at once.
    """
    url = async_url(url)
    if is_sqlite(url):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def _sqlite_sync_engine(url: sa.URL, pool_size: int) -> sa.Engine:
    engine = sa.create_engine(
        url.set(drivername="sqlite"),
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def create_sqlite_writer_engine(url: sa.URL) -> sa.Engine:
    """A blocking engine on the same SQLite file, for the one thread that writes to it."""
    return _sqlite_sync_engine(url, 1)


def _begin_snapshot(conn: sa.Connection) -> None:
    # The driver only opens a transaction before a write: without this BEGIN each SELECT
    # would see its own snapshot of the database.
    conn.exec_driver_sql("BEGIN")


def create_sqlite_reader_engine(url: sa.URL, pool_size: int) -> sa.Engine:
    """A blocking engine on the same SQLite file, for a pool of reader threads.

    Each connection's use is one read transaction, so every statement of a
    read sees the same snapshot (WAL: readers never block the writer).
    """
    engine = _sqlite_sync_engine(url, pool_size)
    sa.event.listen(engine, "begin", _begin_snapshot)
    return engine


def is_file_sqlite(url: sa.URL) -> bool:
    """True for SQLite on a file: a second engine on the same URL sees the same database."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return database not in ("", ":memory:") and url.query.get("mode") != "memory"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (blocking; runs its own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)
