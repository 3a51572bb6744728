"""A fresh, migrated database per saver, and a saver on it with its own group-commit writer.

Every test that uses `make_saver` (or `saver`) runs on both back ends: a SQLite file
under tmp_path, and a new database on the session's throwaway PostgreSQL server
(`postgres_url` in tests/conftest.py). With STEPSTREAM_TEST_POSTGRES_URL set to a
server's admin URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres), that
server is used instead of a throwaway one.
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


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The back end of the test's databases."""
    return str(request.param)


@pytest.fixture
def make_saver(tmp_path: pathlib.Path, backend: str, request: pytest.FixtureRequest) -> SaverFactory:
    """Each call opens a saver on a new database."""
    counter = itertools.count()
    admin_url = None
    if backend == "postgres":
        admin_url = POSTGRES_ADMIN_URL or str(request.getfixturevalue("postgres_url"))

    @asynccontextmanager
    async def open_saver() -> AsyncIterator[SQLAlchemyCheckpointSaver]:
        if admin_url:
            url = await _new_postgres_database(admin_url)
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
async def database_url(tmp_path: pathlib.Path, backend: str, request: pytest.FixtureRequest) -> str:
    """A new empty database on the test's back end (no tables: the test makes its own)."""
    if backend == "postgres":
        admin_url = POSTGRES_ADMIN_URL or str(request.getfixturevalue("postgres_url"))
        return await _new_postgres_database(admin_url)
    return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
async def saver(make_saver: SaverFactory) -> AsyncIterator[SQLAlchemyCheckpointSaver]:
    async with make_saver() as s:
        yield s
