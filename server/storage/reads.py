"""Reads in one hop: a whole logical read runs as one blocking function on a connection.

Through the async engine, SQLite pays a thread hop (aiosqlite) per statement,
per cursor and per fetch, plus the greenlet machinery around each: a checkpoint
load is about nine hops. A `Reader` runs the read's function on a blocking
engine of its own, on the same file with the same pragmas, in a small pool of
threads: one hop per read, and the rows are decoded off the event loop. There
each call is one read transaction, so its statements see one snapshot; WAL
readers never block the group-commit writer, nor it them.

Other back ends have real async drivers: there the function runs through
`AsyncConnection.run_sync` on the service's engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.storage.db import create_sqlite_reader_engine, is_file_sqlite
from stepstream.server.storage.retry import retrying

T = TypeVar("T")

READER_THREADS = 4


class Reader:
    def __init__(
        self, engine: AsyncEngine, threads: int = READER_THREADS, retry_seconds: float = 30.0
    ) -> None:
        """`threads` reader threads on SQLite files; with 0, or on other back ends, reads use `engine`."""
        self.engine = engine
        self._sync_engine: sa.Engine | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self.retry_seconds = retry_seconds
        # In-memory SQLite is one database per connection: a second engine would not see it.
        if threads > 0 and is_file_sqlite(engine.url):
            self._sync_engine = create_sqlite_reader_engine(engine.url, threads)
            self._threads = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="sqlite-reader")

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(conn)` on one connection, in one transaction; its result, or what it raised."""
        if self._closed:
            raise RuntimeError("the database reader is closed")
        if self._threads is not None:
            return await asyncio.get_running_loop().run_in_executor(self._threads, self._run_sync, fn)
        # Reads are safe to repeat: ride out a database restart (storage/retry.py).
        return await retrying(lambda: self._run_async(fn), self.retry_seconds, "a read")

    async def _run_async(self, fn: Callable[[sa.Connection], T]) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn)

    def _run_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            return fn(conn)

    async def close(self) -> None:
        """Let reads under way finish, then close the connections and threads."""
        if self._closed:
            return
        self._closed = True
        threads, engine = self._threads, self._sync_engine
        if threads is not None and engine is not None:

            def stop() -> None:
                threads.shutdown(wait=True)
                engine.dispose()

            await asyncio.to_thread(stop)
