"""Release a run's event batches in order, each once what it waits for is done.

A batch pushed with a gate (a future) is released once the gate resolves, and
every batch pushed after it waits behind it; batches with nothing to wait for
pass straight through when nothing is held before them. durability.py gates
the batches that report a superstep on that superstep's checkpoint save.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Batch = TypeVar("Batch")


class OrderedRelease(Generic[Batch]):
    def __init__(self, release: Callable[[Batch, Any], Any]) -> None:
        # Called with each batch and what its gate resolved to (None without a gate).
        self._release = release
        self._held: collections.deque[tuple[Batch, asyncio.Future[Any] | None]] = collections.deque()
        self._task: asyncio.Task[None] | None = None

    def push(self, batch: Batch, gate: asyncio.Future[Any] | None = None) -> None:
        """Release `batch` after every batch pushed before it, and after `gate` if given."""
        if gate is None and not self._held:
            self._release(batch, None)
            return
        self._held.append((batch, gate))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._held:
                batch, gate = self._held[0]
                result = None if gate is None else await gate
                self._held.popleft()
                self._release(batch, result)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def flush(self) -> None:
        """Wait until everything pushed so far is released."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def drop(self) -> None:
        """Forget what is held (the run was cancelled or taken over): it is never released."""
        for _, gate in self._held:
            if gate is not None:
                gate.cancel()
        self._held.clear()
        if self._task is not None:
            # A task cancelled before it started never runs its `finally`.
            self._task.cancel()
            self._task = None
