"""A fresh, migrated database per saver, and a saver on it with its own group-commit writer.

SQLite files under tmp_path by default. With STEPSTREAM_TEST_POSTGRES_URL set to a
server's admin URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres, with
the driver installed), each saver gets a new database on that server instead.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import sqlalchemy as sa

from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.db import create_engine, upgrade_async

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]
POSTGRES_ADMIN_URL = os.environ.get("STEPSTREAM_TEST_POSTGRES_URL")


async def _new_postgres_database(admin_url: str) -> str:
    name = f"stepstream_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def make_saver(tmp_path: pathlib.Path) -> SaverFactory:
    """Each call opens a saver on a new database."""
    counter = itertools.count()

    @asynccontextmanager
    async def open_saver() -> AsyncIterator[SQLAlchemyCheckpointSaver]:
        if POSTGRES_ADMIN_URL:
            url = await _new_postgres_database(POSTGRES_ADMIN_URL)
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / f'checkpoints-{next(counter)}.db'}"
        await upgrade_async(url)
        engine = create_engine(url)
        writer = GroupCommitWriter(engine)
        try:
            yield SQLAlchemyCheckpointSaver(engine, writer)
        finally:
            await writer.close()
            await engine.dispose()

    return open_saver


@pytest.fixture
async def saver(make_saver: SaverFactory) -> AsyncIterator[SQLAlchemyCheckpointSaver]:
    async with make_saver() as s:
        yield s
