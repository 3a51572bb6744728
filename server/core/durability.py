"""The rule: no event is published before its checkpoint is durable.

A run's events report supersteps whose checkpoints the saver writes. Nobody is
told of work that could still be lost, so an event that reports a superstep
finished is stored, and published, only once that superstep's checkpoint has
committed, and a run is said to have ended only once all of its saves have.
This module applies the rule to each run the executor runs; the pieces it
relies on only provide the means:

- "sync" durability: the graph waits after each superstep until its checkpoint
  is durable (the saver's `checkpoint_committed`); then its events go.
- "async" durability (LangGraph's own default): the graph goes on while its
  saves commit, and the saves return once queued (the saver's
  `deferred_commits`). A batch of events that reports a superstep finished
  waits, with every batch after it (release.py keeps the order), until that
  checkpoint's save is queued on the group-commit writer (`checkpoint_save`).
  It is then stored in the same transaction as the save or a later one, and
  never without it (the writer's `after`, storage/batch.py). Waiting for the
  commit itself instead gave the events a transaction of their own, one
  commit later.
- The event log publishes a batch to subscribers only after the transaction
  holding it committed (eventlog.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from stepstream.server.core import events as ev
from stepstream.server.core.events import EventItem
from stepstream.server.core.ports import RunSaver
from stepstream.server.core.release import OrderedRelease
from stepstream.server.settings import Durability

log = logging.getLogger(__name__)

Commit = asyncio.Future[None]


def first_failure(submissions: Sequence[Commit]) -> BaseException | None:
    """Why one of these submissions did not commit, if one is known not to have."""
    for submission in submissions:
        if submission.cancelled():
            return RuntimeError("writes this batch depended on were dropped")
        if submission.done() and (error := submission.exception()) is not None:
            return error
    return None


class DurableEvents:
    """One run's event batches, each handed to `release` once what it reports is durable.

    `release(items, after)` stores the batch; `after` are the commits of the saves it
    reports, which the batch must be stored with or after.
    """

    def __init__(
        self,
        saver: RunSaver,
        durability: Durability,
        run_id: str,
        thread_id: str,
        release: Callable[[list[EventItem], Sequence[Commit]], object],
    ) -> None:
        self._saver = saver
        self._durability = durability
        self._run_id = run_id
        self._thread_id = thread_id
        self._release = release
        self._ordered: OrderedRelease[list[EventItem]] = OrderedRelease(
            lambda items, saves: release(items, saves or ())
        )
        # The commits of the run's checkpoint saves, when they are deferred (see `saving`).
        self.commits: list[Commit] = []

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """While the graph runs. With "async" durability its saves return once queued, so the
        supersteps of a run share commits instead of taking one each, in turn."""
        if self._durability is not Durability.ASYNC:
            yield
            return
        with self._saver.deferred_commits() as commits:
            self.commits = commits
            yield

    async def report(self, items: list[EventItem]) -> None:
        """Release `items` once the checkpoints they report are durable, after every earlier batch."""
        if self._durability is Durability.SYNC:
            # The graph waits here: its next superstep starts once this one is durable.
            await self._checkpoints_committed(items)
            self._release(items, ())
        else:
            self._ordered.push(items, self._gate(items))

    async def flush(self) -> None:
        """Wait until every batch reported so far is released."""
        await self._ordered.flush()

    async def committed(self, raise_errors: bool = True) -> None:
        """Wait for the commits of the run's saves; shielded, so a cancelled wait cancels no write."""
        await asyncio.shield(asyncio.gather(*self.commits, return_exceptions=not raise_errors))

    async def settle(self) -> None:
        """After the run stopped early: release what committed, and wait for the saves still queued."""
        with contextlib.suppress(Exception):
            await self._ordered.flush()
        await self.committed(raise_errors=False)

    def drop(self) -> None:
        """The run was cancelled or taken over: what is held is never released, and nobody
        waits for its commits any more (a failed one is not an unretrieved error)."""
        self._ordered.drop()
        for done in self.commits:
            done.add_done_callback(lambda f: f.cancelled() or f.exception())

    def failure(self) -> BaseException | None:
        """Why one of the run's saves did not commit, if one is known not to have."""
        return first_failure(self.commits)

    async def _checkpoints_committed(self, items: list[EventItem]) -> None:
        for kind, _, data in items:
            if kind == ev.SUPERSTEP_FINISHED and not await self._saver.checkpoint_committed(
                data["checkpoint_id"], thread_id=self._thread_id
            ):
                log.warning(
                    "run %s: checkpoint %s not committed in time", self._run_id, data["checkpoint_id"]
                )

    def _gate(self, items: list[EventItem]) -> asyncio.Future[list[Commit]] | None:
        """What `items` wait for before they are stored: their supersteps' checkpoint saves."""
        if any(kind == ev.SUPERSTEP_FINISHED for kind, _, _ in items):
            return asyncio.ensure_future(self._saves_reported(items))
        return None

    async def _saves_reported(self, items: list[EventItem]) -> list[Commit]:
        """The commits of the checkpoints `items` report, once their saves are queued."""
        saves = []
        for kind, _, data in items:
            if kind != ev.SUPERSTEP_FINISHED:
                continue
            try:
                save = await self._saver.checkpoint_save(data["checkpoint_id"], thread_id=self._thread_id)
            except TimeoutError:
                log.warning(
                    "run %s: checkpoint %s was not saved in time", self._run_id, data["checkpoint_id"]
                )
                continue
            if save is not None:
                saves.append(save)
        return saves
