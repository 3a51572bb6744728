"""The database one replica runs on, put together: what implements each of the core's ports.

One engine; the group-commit writer every write of runs goes through, so checkpoints,
events and run records share transactions; the reader; and on them the
checkpointer, the store of sessions, runs and events, the session catalog, the run queue, the
listener for other replicas' notifications, the long-term store graphs read, crons and
webhook deliveries, and assistants (rare writes, each a transaction of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stepstream.server.storage.assistants import AssistantStore
from stepstream.server.storage.batch import GroupCommitWriter
from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver
from stepstream.server.storage.claims import RunQueue
from stepstream.server.storage.db import create_engine, upgrade_async
from stepstream.server.storage.inspector import InspectorStore
from stepstream.server.storage.notify import Listener
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.records import NOTIFY_CHANNEL, Store
from stepstream.server.storage.schedules import ScheduleStore
from stepstream.server.storage.session_catalog import SessionCatalog
from stepstream.server.storage.store import SQLStore
from stepstream.server.storage.store.wiring import close_store, open_store


class Database:
    def __init__(self, db_url: str, max_writes_per_commit: int, retry_seconds: float) -> None:
        self._url = db_url
        self.engine = create_engine(db_url)
        self.writer = GroupCommitWriter(self.engine, max_writes_per_commit, retry_seconds)
        self.reader = Reader(self.engine, retry_seconds=retry_seconds)
        self.saver = SQLAlchemyCheckpointSaver(self.engine, self.writer, reader=self.reader)
        self.store = Store(self.engine, self.reader)
        self.queue = RunQueue(self.writer, self.reader)
        self.assistants = AssistantStore(self.engine, self.reader)
        # Replica heartbeat rows and the inspector's overview read.
        self.inspector = InspectorStore(self.writer, self.reader)
        self.catalog = SessionCatalog(self.writer, self.reader, self.engine.dialect.name)
        self.schedules = ScheduleStore(self.writer, self.reader, self.engine.dialect.name)
        # Opened at start with the config's store section (open_store).
        self.long_term: SQLStore | None = None

    async def open_store(self, section: Mapping[str, Any]) -> SQLStore:
        """The long-term store (LangGraph's BaseStore) from a config's `store` section, its TTL
        sweeper started; ValueError (or the embedder's import error) if it cannot be built."""
        self.long_term = await open_store(self.engine, section)
        return self.long_term

    async def close_store(self) -> None:
        if self.long_term is not None:
            await close_store(self.long_term)
            self.long_term = None

    def listener(self, on_message: Callable[[str], None]) -> Listener:
        """Other replicas' notifications, each handed to `on_message` (PostgreSQL; else disabled)."""
        return Listener(self.engine, NOTIFY_CHANNEL, on_message)

    async def migrate(self) -> None:
        await upgrade_async(self._url)

    def start(self) -> None:
        self.writer.start()

    async def close(self) -> None:
        """Commit what is queued, then close the connections."""
        await self.writer.close()
        await self.reader.close()
        await self.engine.dispose()
