"""The seams between the core and what it runs on: typed Protocols, implemented in storage.

The core knows nothing of SQL: it names here what it needs of the database
(the store, the run queue, the writer, notifications) and of the checkpointer
beyond LangGraph's `BaseCheckpointSaver`; server/storage/ implements each, and
server/storage/backend.py puts them together. The core never looks a hook up by
name: an implementation offers all of a Protocol or is not one the core runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from langgraph.store.base import BaseStore

from stepstream.server.core import records as rec
from stepstream.server.core.events import RunEvent


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

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Every checkpoint, blob and pending write of one thread, copied to another."""
        ...

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None: ...

    async def aprune_history(self, keep: int, thread_ids: Sequence[str] | None = None) -> None: ...


# A statement and its parameters, as storage builds them; the core only hands them back to
# the writer (opaque to it, as SQL is).
Write = tuple[Any, Mapping[str, Any]]
# Writes stored in the transaction that ends a run, given the ended run and the replica that
# held it (None: nobody executed it, e.g. a queued run cancelled): its webhook delivery
# (core/schedules/webhooks.py), so the delivery exists exactly when the end does.
RunEndWrites = Callable[[rec.Run, str | None], Sequence[Write]]


def no_end_writes(run: rec.Run, holder: str | None) -> Sequence[Write]:
    return ()


# (run id, status, replica) of a run queued or running on a session.
ActiveRun = tuple[str, str, str | None]

# Payload prefixes of the notifications replicas send each other (PostgreSQL only).
NOTIFY_EVENTS = "e:"  # + run id: events of the run committed
NOTIFY_QUEUE = "q:"  # + session id, or nothing: a run may have become claimable
NOTIFY_CANCEL = "c:"  # + run id: a cancel was asked of the run's holder


class Writer(Protocol):
    """Group commit (storage/batch.py): writes of many callers share transactions."""

    def submit(
        self, writes: Sequence[Write], after: Sequence[asyncio.Future[None]] = ()
    ) -> asyncio.Future[None]:
        """Queue `writes`; the future resolves once they committed, with or after `after`."""
        ...

    async def write(self, writes: Sequence[Write]) -> None:
        """Return once `writes` are committed."""
        ...


class Store(Protocol):
    """Sessions, runs and their events in the database (storage/records.py).

    Every read is scoped to an owner where the caller names one. The write
    builders return writes for the `Writer`, so a caller stores several
    records, events and notifications in one transaction.
    """

    # Whether writes that change what other replicas wait for carry a notification.
    notifies: bool

    def is_unique_violation(self, exc: BaseException) -> bool:
        """True for a write refused by a unique or primary key."""
        ...

    # -- writes --------------------------------------------------------------------------------
    def notify_writes(self, payload: str) -> list[Write]: ...

    def insert_session(self, session: rec.Session) -> Write: ...

    def set_session_status(self, session_id: str, status: rec.SessionStatus, now: float) -> Write: ...

    def session_after_run(self, session_id: str, run_id: str, status: rec.SessionStatus, now: float) -> Write:
        """The session is busy while other runs are active on it, else takes `status`."""
        ...

    def insert_run(self, run: rec.Run, replica: str | None, lease_expires_at: float | None) -> Write: ...

    def run_ended(self, run: rec.Run, replica: str) -> Write:
        """Fenced by the holder (replica, run.attempt): a replica that lost its lease overwrites nothing."""
        ...

    def run_handed_back(self, run_id: str, replica: str, attempt: int) -> Write:
        """Fenced by the holder, as `run_ended` is."""
        ...

    def trace_context_saved(self, run_id: str, trace_context: str) -> Write: ...

    def event_writes(
        self, session_id: str, events: Sequence[RunEvent], holder: tuple[str, int] | None = None
    ) -> list[Write]:
        """Inserts of a run's events. With `holder` (replica, attempt) each lands only while the
        run is still that holder's: the events of a writer that lost the run are dropped."""
        ...

    # -- reads ---------------------------------------------------------------------------------
    async def get_session(self, owner: str, session_id: str) -> rec.Session:
        """The session, or NotFound (also for another owner's)."""
        ...

    async def list_sessions(
        self, owner: str, graph_id: str, size: int, token: str
    ) -> tuple[list[rec.Session], str]: ...

    async def get_run(self, owner: str, run_id: str) -> rec.Run:
        """The run, or NotFound (also for another owner's)."""
        ...

    async def run_id_taken(self, run_id: str) -> bool: ...

    async def list_runs(
        self, owner: str, session_id: str, statuses: Sequence[rec.RunStatus], size: int, token: str
    ) -> tuple[list[rec.Run], str]: ...

    async def run_is_over(self, run_id: str) -> bool: ...

    async def runs_in_flight(self, owner: str) -> int:
        """The owner's queued and running runs, on every replica."""
        ...

    async def events_after(
        self, run_id: str, after_seq: int, limit: int = ...
    ) -> list[tuple[int, str, bytes]]:
        """Stored events (seq, kind, body) after `after_seq`, in order."""
        ...

    async def sessions_updated_since(self, since: float) -> list[str]: ...

    async def expired_sessions(self, older_than: float, limit: int = ...) -> list[str]: ...

    async def delete_session_rows(self, session_id: str) -> None: ...


class SessionCatalog(Protocol):
    """Sessions as users search and change them (storage/session_catalog.py)."""

    async def search(self, owner: str, query: rec.SessionQuery) -> list[rec.Session]:
        """The owner's sessions matching every filter of `query`, in its order, paged."""
        ...

    async def patch(
        self, owner: str, session_id: str, metadata: Mapping[str, Any], now: float
    ) -> rec.Session | None:
        """Merge `metadata` into the session's (a null removes its key); None if not the owner's."""
        ...

    async def bind(
        self, owner: str, session_id: str, graph_id: str, metadata: Mapping[str, Any], rebind: bool
    ) -> str | None:
        """Bind a session to `graph_id` if it has none (any graph, with `rebind`) and merge
        `metadata`; the session's graph afterwards, None if not the owner's."""
        ...

    async def last_event_seq(self, run_id: str) -> int:
        """The seq of the run's last stored event (0: none)."""
        ...


class RunQueue(Protocol):
    """The run queue in the database: claims, leases, takeovers, cancel requests (storage/claims.py).

    Each call is one transaction of its own.
    """

    async def claim(
        self,
        replica: str,
        now: float,
        lease_seconds: float,
        graph_ids: Collection[str],
        limit: int,
        session_id: str | None = None,
    ) -> list[tuple[rec.Run, int]]:
        """Take up to `limit` claimable runs: each with the last seq of its stored events."""
        ...

    async def renew(self, replica: str, until: float) -> dict[str, str | None]:
        """Extend this replica's leases: {run id: a pending cancel request or None}."""
        ...

    async def lost_and_orphaned(
        self, replica: str, missing: Collection[str], orphans: Collection[str]
    ) -> list[str]: ...

    async def requeue_expired(self, replica: str, now: float) -> list[str]: ...

    async def release_replica(self, replica: str) -> int: ...

    async def request_cancel(self, owner: str, run_id: str, request_json: str) -> bool: ...

    async def cancel_queued(
        self,
        owner: str,
        run_id: str,
        now: float,
        closing: Callable[[int], list[RunEvent]],
        end_writes: RunEndWrites = ...,
    ) -> rec.Run | None:
        """End a queued run with the events `closing(last seq)` gives and `end_writes`."""
        ...

    async def session_active_runs(self, session_id: str) -> list[ActiveRun]: ...

    async def queue_depth(self) -> int: ...


class Listener(Protocol):
    """Notifications from other replicas (storage/notify.py); `enabled` is False where the
    database cannot send them, and callers poll instead."""

    enabled: bool
    on_reconnect: Callable[[], None]

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class TenantStores(Protocol):
    """The long-term store (LangGraph's BaseStore, storage/store/): one view per tenant."""

    def scoped(self, owner: str) -> BaseStore:
        """The store as tenant `owner` sees it: that tenant's items only (ValueError for a bad owner)."""
        ...


class AssistantStore(Protocol):
    """Assistants and their versions in the database (storage/assistants.py), scoped to an owner.

    Reads raise NotFound for an assistant the owner does not have (another's included).
    """

    async def ensure(self, defaults: Sequence[rec.Assistant]) -> None:
        """Create each unless it exists; of replicas doing this at once, one creates each."""
        ...

    async def create(self, assistant: rec.Assistant) -> None:
        """AlreadyExists when the owner has an assistant of that id."""
        ...

    async def get(self, owner: str, assistant_id: str) -> rec.Assistant: ...

    async def update(
        self, owner: str, assistant_id: str, changes: rec.AssistantChanges, now: float
    ) -> rec.Assistant:
        """Save the next version from the live one and `changes`, and make it live."""
        ...

    async def set_version(self, owner: str, assistant_id: str, version: int, now: float) -> rec.Assistant: ...

    async def versions(
        self, owner: str, assistant_id: str, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]: ...

    async def delete(self, owner: str, assistant_id: str) -> bool:
        """False when there is no such assistant that may be deleted (a default may not)."""
        ...

    async def search(
        self, owner: str, query: rec.AssistantQuery, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]: ...
