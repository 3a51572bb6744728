"""The seams between the core and what it runs on: typed Protocols, implemented in storage.

The core names here what it needs of the checkpointer beyond LangGraph's
`BaseCheckpointSaver`; server/storage/ implements it (checkpointer.py). The core
never looks a hook up by name: a saver either offers all of these or is not one
the core can run on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol


class RunSaver(Protocol):
    """The checkpointer as the executor, sessions and retention use it."""

    def new_thread(self, thread_id: str) -> AbstractContextManager[None]:
        """While the first run of a session this process just created executes: the thread
        has no checkpoint yet, so its first read may answer "none" without a query."""
        ...

    def deferred_commits(self) -> AbstractContextManager[list[asyncio.Future[None]]]:
        """Within: checkpoint saves return once queued; yields the commits to wait for."""
        ...

    async def checkpoint_save(
        self, checkpoint_id: str, timeout: float = ..., thread_id: str | None = None
    ) -> asyncio.Future[None] | None:
        """The commit of a checkpoint's save once it is queued; None if already committed.
        Raises TimeoutError if the save is neither queued nor found in time."""
        ...

    async def checkpoint_committed(
        self, checkpoint_id: str, timeout: float = ..., thread_id: str | None = None
    ) -> bool:
        """Wait until a checkpoint's save committed; False if not within `timeout`."""
        ...

    async def adelete_thread(self, thread_id: str) -> None: ...

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None: ...

    async def aprune_history(self, keep: int, thread_ids: Sequence[str] | None = None) -> None: ...
