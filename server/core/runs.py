"""Starting, ordering, cancelling and awaiting runs, with the queue in the database.

Four levels of concurrency control meet here: max_concurrency per run (passed
to LangGraph), one running run per session across every replica (the busy
policy decides what a second start does; the database's unique index backs
it), a cap on runs executing per replica with the database queue behind it
(RESOURCE_EXHAUSTED when it is full), and the rate limiter for external APIs
(inside the graphs' nodes).

A run executes where it is started when its session is free and this replica
has a slot; otherwise it waits in the queue and whichever replica frees a slot
first claims it (the RunQueue port; storage/claims.py). `Dispatcher`
(dispatch.py) keeps the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import weakref
from collections.abc import Collection
from typing import Any

import orjson

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    SessionBusy,
    Unavailable,
)
from stepstream.server.core.eventlog import EventLog
from stepstream.server.core.executor import Execution, RunExecutor
from stepstream.server.core.ids import new_id
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.ports import NOTIFY_QUEUE, ActiveRun, RunQueue, RunSaver, Store, Write
from stepstream.server.core.registry import GraphRegistry
from stepstream.server.core.start import check_nodes, require_pending_interrupt
from stepstream.server.core.tracing import caller_trace_context
from stepstream.server.settings import ServerSettings

log = logging.getLogger(__name__)

# How long a cancel of another replica's run waits for that run to end.
REMOTE_CANCEL_SECONDS = 60.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartRequest:
    """A start whose fields passed the checks of start.py, on a known graph and session."""

    owner: str
    graph_id: str
    session_id: str
    input_json: str
    command: rec.CommandSpec | None
    options: rec.RunOptions
    # Caller-chosen id that makes the start safe to retry; empty: a new uuid.
    run_id: str = ""
    # The context (JSON object text) its nodes read, checked against the graph's context_schema.
    context_json: str | None = None
    # The assistant it runs as, and that assistant's version (0: no saved settings applied).
    assistant_id: str = ""
    assistant_version: int = 0


class _SessionTaken(Exception):
    """Another replica started a run on the session between our check and our insert."""


class RunManager:
    def __init__(
        self,
        settings: ServerSettings,
        registry: GraphRegistry,
        store: Store,
        eventlog: EventLog,
        executor: RunExecutor,
        queue: RunQueue,
        saver: RunSaver,
    ) -> None:
        self._queue = queue
        self._saver = saver
        self._settings = settings
        self._registry = registry
        self._store = store
        self._eventlog = eventlog
        self._executor = executor
        # Runs executing here, and the session each holds.
        self._executions: dict[str, Execution] = {}
        self._by_session: dict[str, str] = {}
        self._ended: dict[str, asyncio.Future[rec.Run]] = {}
        # Held while a run starts on a session or retention deletes or prunes it. Weakly held:
        # a lock disappears once nobody holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.accepting = True
        # Runs may be waiting in the queue (a hint: the dispatcher's poll is the backstop) ...
        self.maybe_queued = True
        # ... on these sessions in particular: a run ending here hands its session on at once.
        self._queued_sessions: set[str] = set()
        # Set to have the dispatcher claim now rather than at its next poll.
        self.queue_changed = asyncio.Event()

    # -- queries -----------------------------------------------------------------------------
    @property
    def executing(self) -> int:
        return len(self._executions)

    @property
    def free_slots(self) -> int:
        return max(0, self._settings.max_active_runs - len(self._executions)) if self.accepting else 0

    def local_run_ids(self) -> set[str]:
        return set(self._executions)

    def executing_here(self, run_id: str) -> rec.Run | None:
        """The run, if it executes in this process now."""
        execution = self._executions.get(run_id)
        return execution.run if execution is not None else None

    def note_queued(self, session_id: str | None) -> None:
        """A run was queued (on this session, if known), here or by another replica."""
        if session_id:
            self._queued_sessions.add(session_id)
        self.maybe_queued = True
        if self.free_slots:
            self.queue_changed.set()

    def session_lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def active_runs(self, session_id: str) -> list[ActiveRun]:
        """(run id, status, replica) of the session's queued and running runs, on any replica."""
        return await self._queue.session_active_runs(session_id)

    async def session_busy(self, session_id: str) -> bool:
        return session_id in self._by_session or bool(await self.active_runs(session_id))

    # -- start -------------------------------------------------------------------------------
    async def start(self, req: StartRequest, new_session: rec.Session | None) -> rec.Run:
        if not self.accepting:
            raise Unavailable("this replica is shutting down; retry on another")
        if req.run_id:
            existing = await self._existing_run(req)
            if existing is not None:
                return existing
        loaded = self._registry.get(req.graph_id)
        check_nodes(loaded, req.options)
        if self.free_slots == 0:
            depth = await self._queue.queue_depth()
            if depth >= self._settings.max_queued_runs:
                raise ResourceExhausted(
                    f"{self.executing} runs are executing here and {depth} are queued; retry later",
                    self._settings.queue_full_retry_after,
                )
        session_id = new_session.session_id if new_session else req.session_id
        async with self.session_lock(session_id):
            for _ in range(3):
                ahead = 0
                if new_session is None:
                    active = await self.active_runs(session_id)
                    if active:
                        await self._apply_busy_policy(req.owner, session_id, req.options.busy_policy, active)
                        active = await self.active_runs(session_id)
                    else:
                        # Retention may have deleted it while this start waited for the lock.
                        await self._store.get_session(req.owner, session_id)
                    ahead = len(active)
                    if req.command is not None and req.command.resumes and not ahead:
                        await require_pending_interrupt(loaded, session_id)
                try:
                    return await self._insert(req, session_id, new_session, ahead)
                except _SessionTaken:
                    continue
            raise Unavailable(f"session {session_id!r} is contended; retry")

    async def _existing_run(self, req: StartRequest) -> rec.Run | None:
        """The run a retried start with the same run_id already created, if any."""
        execution = self._executions.get(req.run_id)
        if execution is not None and execution.run.owner == req.owner:
            return execution.run
        try:
            return await self._store.get_run(req.owner, req.run_id)
        except NotFound:
            return None

    async def _apply_busy_policy(
        self, owner: str, session_id: str, policy: rec.BusyPolicy, active: list[ActiveRun]
    ) -> None:
        if policy is rec.BusyPolicy.REJECT:
            raise SessionBusy(
                f"session {session_id!r} has an active run; wait for it, cancel it, "
                "or start with busy_policy ENQUEUE, INTERRUPT or ROLLBACK"
            )
        if policy in (rec.BusyPolicy.INTERRUPT, rec.BusyPolicy.ROLLBACK):
            for run_id, _, _ in active:
                with contextlib.suppress(FailedPrecondition):  # it ended meanwhile
                    await self.cancel(
                        owner,
                        run_id,
                        rollback=policy is rec.BusyPolicy.ROLLBACK,
                        reason=f"superseded ({policy})",
                    )

    async def _insert(
        self, req: StartRequest, session_id: str, new_session: rec.Session | None, ahead: int
    ) -> rec.Run:
        now = time.time()
        can_execute = ahead == 0 and self.free_slots > 0
        command_json = dumps(dataclasses.asdict(req.command)) if req.command else None
        run = rec.Run(
            run_id=req.run_id or new_id(),
            owner=req.owner,
            session_id=session_id,
            graph_id=req.graph_id,
            status=rec.RunStatus.RUNNING if can_execute else rec.RunStatus.QUEUED,
            options=req.options,
            created_at=now,
            started_at=now if can_execute else None,
            attempt=1 if can_execute else 0,
            input_json=req.input_json or None,
            command_json=command_json,
            trace_context=caller_trace_context(),
            context_json=req.context_json,
            assistant_id=req.assistant_id,
            assistant_version=req.assistant_version,
        )
        writes: list[Write] = []
        if new_session is not None:
            writes.append(self._store.insert_session(new_session))
        lease = now + self._settings.lease_seconds if can_execute else None
        writes += [
            self._store.insert_run(run, self._settings.replica if can_execute else None, lease),
            self._store.set_session_status(session_id, rec.SessionStatus.BUSY, now),
        ]
        if not can_execute:
            writes += self._store.notify_writes(NOTIFY_QUEUE + session_id)
        items: list[ev.EventItem] = [
            (ev.RUN_QUEUED, (), {"session_id": session_id, "graph_id": run.graph_id, "position": ahead})
        ]
        if can_execute:
            items.append((ev.RUN_STARTED, (), self._started_data(run)))
        self._eventlog.open(run.run_id, session_id, 0)
        if can_execute:
            self._by_session[session_id] = run.run_id
        try:
            await self._eventlog.append(run.run_id, items, writes)
        except BaseException as exc:
            # Nothing was stored: undo the bookkeeping so the session is not left busy.
            self._eventlog.close(run.run_id)
            if self._by_session.get(session_id) == run.run_id:
                del self._by_session[session_id]
            if self._store.is_unique_violation(exc):
                # Run ids are one namespace: taken by this owner or another, the answer is the same.
                if req.run_id and await self._store.run_id_taken(req.run_id):
                    raise AlreadyExists(f"run id {req.run_id!r} is taken") from None
                if can_execute:
                    raise _SessionTaken from None
            raise
        if can_execute:
            self._eventlog.hold(run.run_id, self._settings.replica, run.attempt)
            self._launch(Execution(run, new_session=new_session is not None))
        else:
            self._eventlog.close(run.run_id)
            self._queued_sessions.add(session_id)
            self.maybe_queued = True
            # Its session may have freed up while it was being stored: claim it now if so.
            await self.claim(1, session_id)
        return run

    def _started_data(self, run: rec.Run) -> dict[str, Any]:
        return {
            "session_id": run.session_id,
            "graph_id": run.graph_id,
            "attempt": run.attempt,
            "replica": self._settings.replica,
        }

    # -- claims ------------------------------------------------------------------------------
    async def claim(self, limit: int, session_id: str | None = None) -> int:
        """Claim and launch up to `limit` queued runs (of one session, or any); how many."""
        limit = min(limit, self.free_slots)
        if limit <= 0:
            return 0
        graph_ids = self._registry.ids()
        replica, lease = self._settings.replica, self._settings.lease_seconds
        try:
            claimed = await self._queue.claim(replica, time.time(), lease, graph_ids, limit, session_id)
        except Exception as exc:
            # Another replica took the session first (unique index), or the database is away.
            log.log(
                logging.DEBUG if self._store.is_unique_violation(exc) else logging.WARNING,
                "claim failed: %s",
                exc,
            )
            return 0
        for run, last_seq in claimed:
            previous = self._executions.get(run.run_id)
            if previous is not None and previous.task is not None and not previous.task.done():
                # This replica lost the run and is still stopping that execution, and the run
                # came back here: start it once the old one has let go of the run's feed and
                # bookkeeping (else the old one's release would drop the new one's).
                previous.task.add_done_callback(functools.partial(self._start_after, run, last_seq))
                continue
            self._start_claimed(run, last_seq)
        return len(claimed)

    def _start_after(self, run: rec.Run, last_seq: int, previous: asyncio.Future[Any]) -> None:
        self._start_claimed(run, last_seq)

    def _start_claimed(self, run: rec.Run, last_seq: int) -> None:
        self._eventlog.open(run.run_id, run.session_id, last_seq, (self._settings.replica, run.attempt))
        self._by_session[run.session_id] = run.run_id
        self._launch(Execution(run))
        self._eventlog.append(run.run_id, [(ev.RUN_STARTED, (), self._started_data(run))])

    # -- execution ---------------------------------------------------------------------------
    def _launch(self, execution: Execution) -> None:
        run_id = execution.run.run_id
        self._executions[run_id] = execution
        self._ended[run_id] = asyncio.get_running_loop().create_future()
        execution.task = asyncio.create_task(self._execute(execution), name=f"run-{run_id}")

    async def _execute(self, execution: Execution) -> rec.Run:
        run = execution.run
        # Unless the executor says otherwise, the run goes on elsewhere (the database tells).
        result = dataclasses.replace(run, status=rec.RunStatus.QUEUED)
        try:
            result = await self._executor.execute(execution)
        finally:
            if self._executions.get(run.run_id) is execution:
                self._release(run)
                future = self._ended.pop(run.run_id, None)
                if future is not None and not future.done():
                    future.set_result(result)
        if result.status in rec.ENDED and run.options.on_completion is rec.OnCompletion.DELETE:
            await self._delete_session(run.session_id)
        elif result.status != rec.RunStatus.QUEUED and run.session_id in self._queued_sessions:
            await self._hand_on(run.session_id)
        if self.maybe_queued and self.free_slots:
            self.queue_changed.set()
        return result

    async def _delete_session(self, session_id: str) -> None:
        """A stateless run ended: its session goes, checkpoints, runs and events with it (on the
        replica that ended the run, so a run taken over elsewhere is cleaned up there)."""
        try:
            async with self.session_lock(session_id):
                await self._saver.adelete_thread(session_id)
                await self._store.delete_session_rows(session_id)
        except Exception:
            log.exception("could not delete the session %s of a stateless run", session_id)

    async def _hand_on(self, session_id: str) -> None:
        """The next run waiting on this session goes now, here."""
        if self.free_slots and not await self.claim(1, session_id):
            self._queued_sessions.discard(session_id)

    def _release(self, run: rec.Run) -> None:
        self._executions.pop(run.run_id, None)
        if self._by_session.get(run.session_id) == run.run_id:
            del self._by_session[run.session_id]
        self._eventlog.close(run.run_id)

    def lost(self, run_ids: Collection[str]) -> None:
        """Our lease on these runs expired and another replica took them: stop, write nothing."""
        for run_id in run_ids:
            execution = self._executions.get(run_id)
            if execution is not None and execution.task is not None:
                log.warning("run %s was taken over by another replica; stopping it here", run_id)
                execution.fenced = True
                execution.task.cancel()

    def cancel_requested(self, run_id: str, request_json: str) -> None:
        """Another replica asked to cancel a run executing here."""
        execution = self._executions.get(run_id)
        if execution is None or execution.task is None or execution.cancel_reason:
            return
        request = orjson.loads(request_json)
        execution.rollback = bool(request.get("rollback"))
        execution.cancel_reason = str(request.get("reason") or "cancelled by request")
        execution.task.cancel()

    # -- cancel, wait ------------------------------------------------------------------------
    async def cancel(
        self, owner: str, run_id: str, rollback: bool, reason: str = "cancelled by request"
    ) -> rec.Run:
        deadline = time.monotonic() + REMOTE_CANCEL_SECONDS
        while True:
            execution = self._executions.get(run_id)
            if execution is not None and execution.run.owner == owner and execution.task is not None:
                execution.rollback = rollback
                execution.cancel_reason = reason
                ended = self._ended[run_id]
                execution.task.cancel()
                left = max(0.0, deadline - time.monotonic())
                try:
                    return await asyncio.wait_for(asyncio.shield(ended), left)
                except TimeoutError:
                    # Its task is stuck past the cancel (a write that never commits): say so.
                    log.error("run %s did not stop within %.0f s of its cancel", run_id, left)
                    raise Unavailable(f"run {run_id!r} could not be cancelled in time; retry") from None
            run = await self._store.get_run(owner, run_id)
            if not run.active:
                raise FailedPrecondition(f"run {run_id!r} already ended ({run.status})")
            if run.status == rec.RunStatus.QUEUED:
                cancelled = await self._cancel_queued(run, rollback, reason)
                if cancelled is not None:
                    return cancelled
            else:
                asked = await self._request_cancel(
                    owner, run_id, dumps({"reason": reason, "rollback": rollback})
                )
                if asked:
                    return await self.wait(owner, run_id, max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise Unavailable(f"run {run_id!r} could not be cancelled in time; retry")
            await asyncio.sleep(0.01)  # it changed hands meanwhile: look again

    async def _request_cancel(self, owner: str, run_id: str, request: str) -> bool:
        return await self._queue.request_cancel(owner, run_id, request)

    async def _cancel_queued(self, run: rec.Run, rollback: bool, reason: str) -> rec.Run | None:
        now = time.time()

        def closing(last_seq: int) -> list[ev.RunEvent]:
            data = {"reason": reason, "rolled_back": rollback}
            return [ev.RunEvent(run.run_id, last_seq + 1, now, ev.RUN_CANCELLED, (), data)]

        cancelled = await self._queue.cancel_queued(
            run.owner, run.run_id, now, closing, self._executor.end_writes
        )
        if cancelled is not None:
            await self._hand_on(run.session_id)
        return cancelled

    async def wait(self, owner: str, run_id: str, timeout: float | None) -> rec.Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ended = self._ended.get(run_id)
            execution = self._executions.get(run_id)
            if ended is not None and execution is not None and execution.run.owner == owner:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    result = await asyncio.wait_for(asyncio.shield(ended), left)
                except TimeoutError:
                    raise DeadlineExceeded(f"run {run_id!r} did not end within {timeout:g} s") from None
                if result.status != rec.RunStatus.QUEUED:
                    return result
                # Handed back or taken over: it goes on elsewhere; the database tells.
            run = await self._store.get_run(owner, run_id)
            if not run.active:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(f"run {run_id!r} did not end within {timeout:g} s")
            await asyncio.sleep(0.05)

    # -- shutdown ----------------------------------------------------------------------------
    async def drain(self, grace: float) -> None:
        """Stop claiming; let executing runs reach a superstep boundary, then hand the rest back."""
        self.accepting = False
        executing = [e for e in self._executions.values() if e.task is not None]
        for execution in executing:
            execution.control.request_drain("replica shutting down")
        tasks = [e.task for e in executing if e.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for execution in executing:
                if execution.task in pending:
                    execution.handing_back = True
                    execution.task.cancel()
            if pending:
                await asyncio.wait(pending)
