"""A fresh, migrated SQLite file per test, and a saver on it with its own group-commit writer."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.db import create_engine, upgrade_async

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]


@pytest.fixture
def make_saver(tmp_path: pathlib.Path) -> SaverFactory:
    """Each call opens a saver on a new database file under tmp_path."""
    counter = itertools.count()

    @asynccontextmanager
    async def open_saver() -> AsyncIterator[SQLAlchemyCheckpointSaver]:
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
