"""The group-commit writer's direct path to SQLite: the same rows as through SQLAlchemy, or no shortcut."""

from __future__ import annotations

import asyncio
import datetime
import pathlib

import pytest
import sqlalchemy as sa

from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.db import create_engine, create_sqlite_writer_engine
from stepstream.server.storage.plain_sql import MAX_CACHED, PlainStatements

metadata = sa.MetaData()
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("body", sa.LargeBinary),
    sa.Column("state", sa.Text, server_default="new"),
)
stamped = sa.Table(
    "stamped", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", sa.DateTime)
)


def _plain(tmp_path: pathlib.Path) -> PlainStatements:
    engine = create_sqlite_writer_engine(sa.make_url(f"sqlite:///{tmp_path / 'p.db'}"))
    return PlainStatements(engine.dialect)


def test_plain_statements_are_compiled_once_and_others_are_left_to_sqlalchemy(tmp_path: pathlib.Path) -> None:
    plain = _plain(tmp_path)
    insert = items.insert()
    compiled = plain.get(insert, ("id", "name", "score"))
    assert compiled is not None
    assert compiled.row({"id": 1, "name": "a", "score": 0.5}) == (1, "a", 0.5)
    assert plain.get(insert, ("id", "name", "score")) is compiled
    # Values the statement binds itself are filled in; the row's own come first.
    update = items.update().where(items.c.id == sa.bindparam("key")).values(state="done")
    fixed = plain.get(update, ("key",))
    assert fixed is not None and fixed.row({"key": 7}) == ("done", 7)
    # A type SQLAlchemy must convert (DateTime is text on SQLite): not plain.
    assert plain.get(stamped.insert(), ("id", "at")) is None
    # An expanding IN list, or a required parameter the rows lack: not plain either.
    expanding = items.delete().where(items.c.id.in_(sa.bindparam("ids", expanding=True)))
    assert plain.get(expanding, ("ids",)) is None
    assert plain.get(update, ()) is None


async def test_the_writer_stores_the_same_rows_either_way(tmp_path: pathlib.Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    writer = GroupCommitWriter(engine)
    writer.start()
    when = datetime.datetime(2026, 11, 24, 3, 0)
    try:
        await writer.write(
            [
                (items.insert(), {"id": 1, "name": "a", "score": 1.5, "body": b"\x00\xff"}),
                (items.insert(), {"id": 2, "name": "b", "score": 2, "body": None}),
                (items.insert(), {"id": 3, "name": "c"}),  # fewer columns: its own statement
                (stamped.insert(), {"id": 1, "at": when}),  # through SQLAlchemy
            ]
        )
        await writer.write(
            [(items.update().where(items.c.id == sa.bindparam("key")).values(state="done"), {"key": 2})]
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(items).order_by(items.c.id))).all()
            at = (await conn.execute(sa.select(stamped.c.at))).scalar_one()
        assert [tuple(r) for r in rows] == [
            (1, "a", 1.5, b"\x00\xff", "new"),
            (2, "b", 2.0, None, "done"),
            (3, "c", None, None, "new"),
        ]
        assert at == when
    finally:
        await writer.close()
        await engine.dispose()


def test_statements_built_per_write_do_not_grow_the_cache_without_end(tmp_path: pathlib.Path) -> None:
    plain = _plain(tmp_path)
    for i in range(MAX_CACHED + 10):
        assert plain.get(items.update().where(items.c.id == i).values(state="x"), ()) is not None
    assert len(plain._cache) <= MAX_CACHED


async def test_writes_waiting_on_a_writer_that_stopped_fail_instead_of_waiting_forever(
    tmp_path: pathlib.Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    writer = GroupCommitWriter(engine)

    def broken() -> list[object]:
        raise RuntimeError("a bug in the writer loop")

    # A fault of the loop itself (not of one batch's writes, which are retried caller by caller).
    writer._take_batch = broken  # type: ignore[assignment,method-assign]
    try:
        waiting = writer.submit([(items.insert(), {"id": 1, "name": "a"})])
        with pytest.raises(RuntimeError, match="a bug in the writer loop"):
            await asyncio.wait_for(waiting, 10)
        with pytest.raises(RuntimeError, match="closed"):
            writer.submit([(items.insert(), {"id": 2, "name": "b"})])
    finally:
        await engine.dispose()
