"""The Reader: each logical read is one function on one connection, in one hop on SQLite."""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import sqlalchemy as sa
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from stepstream.server.storage.checkpoint_reads import LIST_PAGE
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.db import create_engine, upgrade_async
from stepstream.server.storage.reads import Reader

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]


@pytest.fixture
async def sqlite_file(tmp_path: pathlib.Path) -> AsyncIterator[tuple[str, pathlib.Path]]:
    path = tmp_path / "reads.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    yield url, path


async def test_sqlite_reads_run_on_reader_threads_one_snapshot_per_call(
    sqlite_file: tuple[str, pathlib.Path],
) -> None:
    url, path = sqlite_file
    engine = create_engine(url)
    reader = Reader(engine)
    insert = "INSERT INTO sessions (session_id, owner, graph_id, status, created_at, updated_at) "
    insert += "VALUES (?, 'o', 'g', 'idle', 0, 0)"

    def write(session_id: str) -> None:
        with contextlib.closing(sqlite3.connect(path)) as other, other:
            other.execute(insert, (session_id,))

    def count(conn: sa.Connection) -> int:
        return int(conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one())

    def twice(conn: sa.Connection) -> tuple[str, int, int]:
        first = count(conn)
        write("during")  # committed by another connection between the two statements
        return threading.current_thread().name, first, count(conn)

    try:
        write("before")
        name, first, second = await reader.run(twice)
        assert name.startswith("sqlite-reader")
        assert (first, second) == (1, 1)  # one snapshot for the whole call
        assert await reader.run(count) == 2  # the next call sees the commit

        def fails(conn: sa.Connection) -> None:
            conn.execute(sa.text("SELECT * FROM no_such_table"))

        with pytest.raises(sa.exc.OperationalError):
            await reader.run(fails)
        assert await reader.run(count) == 2  # the connection went back to the pool usable
    finally:
        await reader.close()
        await reader.close()
        await engine.dispose()
    with pytest.raises(RuntimeError):
        await reader.run(count)


async def test_in_memory_sqlite_reads_through_the_async_engine() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    reader = Reader(engine)
    try:
        # A second engine on ":memory:" would open another, empty database.
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (42)"))
        assert await reader.run(lambda conn: conn.execute(sa.text("SELECT x FROM t")).scalar()) == 42
    finally:
        await reader.close()
        await engine.dispose()


class Counting(Reader):
    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.calls = 0

    async def run(self, fn: Callable[[sa.Connection], Any]) -> Any:
        self.calls += 1
        return await super().run(fn)


async def test_one_read_per_checkpoint_load_and_per_list_page(make_saver: SaverFactory) -> None:
    async with make_saver() as made:
        reader = Counting(made.engine)
        saver = SQLAlchemyCheckpointSaver(made.engine, made.writer, reader=reader)
        parent: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        count = LIST_PAGE + 5
        for step in range(count):
            checkpoint = empty_checkpoint()
            checkpoint["id"] = str(uuid6(clock_seq=step))
            version = saver.get_next_version(None, None)
            checkpoint["channel_values"] = {"items": [step]}
            checkpoint["channel_versions"] = {"items": version}
            parent = await saver.aput(parent, checkpoint, {"step": step}, {"items": version})
            await saver.aput_writes(parent, [("items", [step])], task_id="task")
        cfg: Any = {"configurable": {"thread_id": "t"}}

        latest = await saver.aget_tuple(cfg)
        assert reader.calls == 1
        assert latest is not None and latest.checkpoint["channel_values"]["items"] == [count - 1]
        assert latest.pending_writes == [("task", "items", [count - 1])]

        assert len([t async for t in saver.alist(cfg)]) == count
        assert reader.calls == 1 + 2
        assert len([t async for t in saver.alist(cfg, limit=3)]) == 3
        assert reader.calls == 1 + 2 + 1

        await saver.aclose()  # a reader passed in stays open: its owner closes it
        assert await reader.run(lambda conn: 1) == 1
        await reader.close()


async def test_saver_closes_the_reader_it_made(make_saver: SaverFactory) -> None:
    async with make_saver() as made:
        saver = SQLAlchemyCheckpointSaver(made.engine, made.writer)
        assert await saver.aget_tuple({"configurable": {"thread_id": "none"}}) is None
        await saver.aclose()
        with pytest.raises(RuntimeError):
            await saver.reader.run(lambda conn: 1)
