"""The group-commit writer's promises when a batch fails, and for writes that depend on others.

Each test runs on SQLite and on the session's throwaway PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.storage.batch import GroupCommitWriter, Write
from stepstream.server.storage.db import create_engine

pytestmark = pytest.mark.process

metadata = sa.MetaData()
items = sa.Table("items", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def writer(engine: AsyncEngine) -> AsyncIterator[GroupCommitWriter]:
    writer = GroupCommitWriter(engine, retry_seconds=0)
    writer.start()
    yield writer
    await writer.close()


# SQLite's direct path raises the driver's own error; elsewhere SQLAlchemy wraps it.
DUPLICATE = (sa.exc.IntegrityError, sqlite3.IntegrityError)


def _insert(item_id: int, name: str = "x") -> list[Write]:
    return [(items.insert(), {"id": item_id, "name": name})]


async def _stored(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        return {row.id: row.name for row in await conn.execute(sa.select(items))}


async def _outcome(done: asyncio.Future[None]) -> str:
    try:
        await asyncio.wait_for(asyncio.shield(done), 10)
    except DUPLICATE:
        return "duplicate"
    except TimeoutError:
        return "never resolved"
    return "committed"


async def test_a_failing_write_fails_alone_and_its_neighbours_are_told_they_committed(
    engine: AsyncEngine, writer: GroupCommitWriter
) -> None:
    await writer.write(_insert(1, "first"))
    # Submitted in one turn of the loop, so they share a batch; the middle one breaks it.
    batch = [writer.submit(_insert(2)), writer.submit(_insert(1)), writer.submit(_insert(3))]
    outcomes = [await _outcome(d) for d in batch]
    assert outcomes == ["committed", "duplicate", "committed"]
    assert await _stored(engine) == {1: "first", 2: "x", 3: "x"}


async def test_writes_that_depend_on_a_failed_submission_are_not_written(
    engine: AsyncEngine, writer: GroupCommitWriter
) -> None:
    await writer.write(_insert(1, "first"))
    # In the same batch as what they depend on, and in a later batch.
    failing = writer.submit(_insert(1))
    dependent = writer.submit(_insert(2), after=[failing])
    unrelated = writer.submit(_insert(3))
    assert [await _outcome(d) for d in (failing, dependent, unrelated)] == ["duplicate"] * 2 + ["committed"]
    failing = writer.submit(_insert(1))
    await asyncio.sleep(0)
    later = writer.submit(_insert(4), after=[failing])
    assert [await _outcome(d) for d in (failing, later)] == ["duplicate", "duplicate"]
    # Once it is known to have failed, a dependent submission fails at once; so it does on one
    # that was dropped.
    with pytest.raises(DUPLICATE):
        await writer.submit(_insert(5), after=[failing])
    dropped = asyncio.get_running_loop().create_future()
    dropped.cancel()
    with pytest.raises(RuntimeError, match="dropped"):
        await writer.submit(_insert(6), after=[dropped])
    assert await _stored(engine) == {1: "first", 3: "x"}


async def test_writes_that_depend_on_others_commit_with_them_or_after(
    engine: AsyncEngine, writer: GroupCommitWriter
) -> None:
    order: list[str] = []
    first = writer.submit(_insert(1, "checkpoint"))
    second = writer.submit(_insert(2, "events"), after=[first])
    first.add_done_callback(lambda _: order.append("checkpoint"))
    second.add_done_callback(lambda _: order.append("events"))
    await second
    assert order == ["checkpoint", "events"]
    # Depending on what already committed is depending on nothing.
    await asyncio.wait_for(writer.submit(_insert(3), after=[first]), 10)
    await asyncio.wait_for(writer.submit([], after=[first]), 10)
    assert await _stored(engine) == {1: "checkpoint", 2: "events", 3: "x"}
