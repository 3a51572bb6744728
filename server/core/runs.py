"""Starting, ordering, cancelling and awaiting runs on this replica.

Four levels of concurrency control meet here: max_concurrency per run (passed
to LangGraph), one active run per session (the busy policy decides what a
second start does; the database's unique index backs it), a cap on runs
executing per replica with a bounded queue behind it (RESOURCE_EXHAUSTED when
full), and the rate limiter for external APIs (inside the graphs' nodes).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import time
import uuid
import weakref
from typing import Any

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from stepstream.server.core.eventlog import EventLog
from stepstream.server.core.executor import Execution, RunExecutor
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.registry import GraphRegistry, LoadedGraph
from stepstream.server.core.store import Store, is_unique_violation
from stepstream.server.settings import ServerSettings
from stepstream.server.storage.batch import GroupCommitWriter, Write

RUN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_SESSION_STATUS_AFTER = {
    rec.SUCCEEDED: rec.IDLE,
    rec.INTERRUPTED: rec.INTERRUPTED,
    rec.FAILED: rec.ERROR,
    rec.CANCELLED: rec.IDLE,
}


@dataclasses.dataclass(frozen=True)
class StartRequest:
    owner: str
    graph_id: str
    session_id: str
    input_json: str
    command: rec.CommandSpec | None
    options: rec.RunOptions
    # Caller-chosen id that makes the start safe to retry; empty: a new uuid.
    run_id: str = ""


class RunManager:
    def __init__(
        self,
        settings: ServerSettings,
        registry: GraphRegistry,
        store: Store,
        eventlog: EventLog,
        executor: RunExecutor,
        writer: GroupCommitWriter,
    ) -> None:
        self._writer = writer
        self._settings = settings
        self._registry = registry
        self._store = store
        self._eventlog = eventlog
        self._executor = executor
        # Active runs of each session in start order; the head is the one that may execute.
        self._by_session: dict[str, collections.deque[str]] = {}
        self._executions: dict[str, Execution] = {}
        self._ended: dict[str, asyncio.Future[rec.Run]] = {}
        # Session heads waiting for an execution slot, oldest first.
        self._ready: collections.deque[str] = collections.deque()
        self._executing = 0
        # Held while a run starts on a session or retention deletes or prunes it. Weakly held:
        # a lock disappears once nobody holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._accepting = True

    # -- queries -----------------------------------------------------------------------------
    @property
    def executing(self) -> int:
        return self._executing

    @property
    def queued(self) -> int:
        return len(self._executions) - self._executing

    def session_busy(self, session_id: str) -> bool:
        return bool(self._by_session.get(session_id))

    def session_lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    def active_run_ids(self, session_id: str) -> list[str]:
        return list(self._by_session.get(session_id, ()))

    def is_local(self, run_id: str) -> bool:
        return run_id in self._executions

    # -- start -------------------------------------------------------------------------------
    async def start(self, req: StartRequest, new_session: rec.Session | None) -> rec.Run:
        if not self._accepting:
            raise Unavailable("this replica is shutting down; retry on another")
        if req.run_id:
            existing = await self._existing_run(req)
            if existing is not None:
                return existing
        loaded = self._registry.get(req.graph_id)
        _check_nodes(loaded, req.options)
        if (
            self._executing >= self._settings.max_active_runs
            and self.queued >= self._settings.max_queued_runs
        ):
            raise ResourceExhausted(
                f"this replica has {self._executing} runs executing and {self.queued} queued; retry later",
                self._settings.queue_full_retry_after,
            )
        session_id = new_session.session_id if new_session else req.session_id
        async with self.session_lock(session_id):
            if new_session is None and not self.session_busy(session_id):
                # Retention may have deleted it while this start waited for the lock.
                await self._store.get_session(req.owner, session_id)
            if self.session_busy(session_id):
                await self._apply_busy_policy(req.owner, session_id, req.options.busy_policy)
            if req.command is not None and req.command.resumes and not self.session_busy(session_id):
                await _require_pending_interrupt(loaded, session_id)
            return await self._insert(req, session_id, new_session)

    async def _existing_run(self, req: StartRequest) -> rec.Run | None:
        """The run a retried start with the same run_id already created, if any."""
        if not RUN_ID.match(req.run_id):
            raise InvalidArgument("run_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -")
        execution = self._executions.get(req.run_id)
        if execution is not None and execution.run.owner == req.owner:
            return execution.run
        try:
            return await self._store.get_run(req.owner, req.run_id)
        except NotFound:
            return None

    async def _apply_busy_policy(self, owner: str, session_id: str, policy: str) -> None:
        if policy == "reject":
            raise FailedPrecondition(
                f"session {session_id!r} has an active run; wait for it, cancel it, "
                "or start with busy_policy ENQUEUE, INTERRUPT or ROLLBACK"
            )
        if policy in ("interrupt", "rollback"):
            for run_id in list(self._by_session.get(session_id, ())):
                await self.cancel(
                    owner, run_id, rollback=policy == "rollback", reason=f"superseded ({policy})"
                )

    async def _insert(self, req: StartRequest, session_id: str, new_session: rec.Session | None) -> rec.Run:
        now = time.time()
        queue = self._by_session.setdefault(session_id, collections.deque())
        runs_ahead = len(queue)
        can_execute = runs_ahead == 0 and self._executing < self._settings.max_active_runs
        command_json = dumps(dataclasses.asdict(req.command)) if req.command else None
        run = rec.Run(
            run_id=req.run_id or str(uuid.uuid4()),
            owner=req.owner,
            session_id=session_id,
            graph_id=req.graph_id,
            status=rec.RUNNING if can_execute else rec.QUEUED,
            options=req.options,
            created_at=now,
            started_at=now if can_execute else None,
            attempt=1 if can_execute else 0,
            input_json=req.input_json or None,
            command_json=command_json,
        )
        writes: list[Write] = []
        if new_session is not None:
            writes.append(self._store.insert_session(new_session))
        writes += [
            self._store.insert_run(run, self._settings.replica if can_execute else None),
            self._store.set_session_status(session_id, rec.BUSY, now),
        ]
        items: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
            (ev.RUN_QUEUED, (), {"session_id": session_id, "graph_id": run.graph_id, "position": runs_ahead})
        ]
        if can_execute:
            items.append((ev.RUN_STARTED, (), self._started_data(run)))
        queue.append(run.run_id)
        self._executions[run.run_id] = Execution(run)
        self._ended[run.run_id] = asyncio.get_running_loop().create_future()
        self._eventlog.open(run.run_id, session_id, 0)
        try:
            await self._eventlog.append(run.run_id, items, writes)
        except BaseException as exc:
            # Nothing was stored: undo the bookkeeping so the session is not left busy.
            self._forget(run.run_id)
            self._ended.pop(run.run_id, None)
            self._eventlog.close(run.run_id)
            queue.remove(run.run_id)
            if not queue:
                self._by_session.pop(session_id, None)
            if req.run_id and is_unique_violation(exc):
                raise AlreadyExists(f"run id {req.run_id!r} is taken") from None
            raise
        if can_execute:
            self._launch(self._executions[run.run_id])
        elif runs_ahead == 0:
            self._ready.append(run.run_id)
        return run

    def _started_data(self, run: rec.Run) -> dict[str, Any]:
        return {
            "session_id": run.session_id,
            "graph_id": run.graph_id,
            "attempt": run.attempt,
            "replica": self._settings.replica,
        }

    # -- execution ---------------------------------------------------------------------------
    def _launch(self, execution: Execution) -> None:
        self._executing += 1
        execution.task = asyncio.create_task(self._execute(execution), name=f"run-{execution.run.run_id}")

    async def _execute(self, execution: Execution) -> rec.Run:
        run_id = execution.run.run_id
        try:
            result = await self._executor.execute(execution)
        finally:
            self._executing -= 1
        await self._ended_run(run_id, result)
        return result

    async def _ended_run(self, run_id: str, result: rec.Run) -> None:
        execution = self._executions.get(run_id)
        if execution is None:
            return
        session_id = execution.run.session_id
        if result.status == rec.QUEUED:  # handed back on shutdown: leave it to the next owner
            self._forget(run_id)
            return
        queue = self._by_session.get(session_id)
        if queue and queue[0] == run_id:
            queue.popleft()
        elif queue and run_id in queue:
            queue.remove(run_id)
        self._forget(run_id)
        if queue:
            self._ready.append(queue[0])
        else:
            self._by_session.pop(session_id, None)
            status = _SESSION_STATUS_AFTER.get(result.status, rec.IDLE)
            await self._writer.write([self._store.set_session_status(session_id, status, time.time())])
        future = self._ended.pop(run_id, None)
        if future is not None and not future.done():
            future.set_result(result)
        self._eventlog.close(run_id)
        await self._dispatch()

    def _forget(self, run_id: str) -> None:
        self._executions.pop(run_id, None)

    async def _dispatch(self) -> None:
        while self._ready and self._executing < self._settings.max_active_runs and self._accepting:
            run_id = self._ready.popleft()
            execution = self._executions.get(run_id)
            if execution is None or execution.task is not None:
                continue
            run = dataclasses.replace(
                execution.run, status=rec.RUNNING, started_at=time.time(), attempt=execution.run.attempt + 1
            )
            execution.run = run
            self._eventlog.open(run_id, run.session_id, run.last_seq)
            self._launch(execution)
            self._eventlog.append(
                run_id,
                [(ev.RUN_STARTED, (), self._started_data(run))],
                [self._store.run_started(run_id, run.started_at or 0.0, run.attempt, self._settings.replica)],
            )

    # -- cancel, wait ------------------------------------------------------------------------
    async def cancel(
        self, owner: str, run_id: str, rollback: bool, reason: str = "cancelled by request"
    ) -> rec.Run:
        execution = self._executions.get(run_id)
        if execution is None or execution.run.owner != owner:
            run = await self._store.get_run(owner, run_id)
            if not run.active:
                raise FailedPrecondition(f"run {run_id!r} already ended ({run.status})")
            raise FailedPrecondition(f"run {run_id!r} is held by another replica; retry shortly")
        execution.rollback = rollback
        execution.cancel_reason = reason
        ended = self._ended[run_id]
        if execution.task is not None:
            execution.task.cancel()
            return await asyncio.shield(ended)
        # Queued here and never started: record the cancellation directly.
        run = execution.run
        if run_id in self._ready:
            self._ready.remove(run_id)
        result = dataclasses.replace(
            run, status=rec.CANCELLED, ended_at=time.time(), last_seq=self._eventlog.last_seq(run_id) + 1
        )
        await self._eventlog.append(
            run_id,
            [(ev.RUN_CANCELLED, (), {"reason": reason, "rolled_back": rollback})],
            [self._store.run_ended(result)],
        )
        await self._ended_run(run_id, result)
        return result

    async def wait(self, owner: str, run_id: str, timeout: float | None) -> rec.Run:
        ended = self._ended.get(run_id)
        execution = self._executions.get(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        if ended is not None and execution is not None and execution.run.owner == owner:
            try:
                return await asyncio.wait_for(asyncio.shield(ended), timeout)
            except TimeoutError:
                raise DeadlineExceeded(f"run {run_id!r} did not end within {timeout:g} s") from None
        while True:  # not executing here: the database tells
            run = await self._store.get_run(owner, run_id)
            if not run.active:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(f"run {run_id!r} did not end within {timeout:g} s")
            await asyncio.sleep(0.05)

    # -- start-up and shutdown ---------------------------------------------------------------
    async def recover(self) -> int:
        """Queue the runs a previous process left active; they continue from their checkpoints."""
        recovered = 0
        for run in await self._store.active_runs():
            if run.graph_id not in {g.spec.graph_id for g in self._registry.all()}:
                continue
            queue = self._by_session.setdefault(run.session_id, collections.deque())
            queue.append(run.run_id)
            self._executions[run.run_id] = Execution(dataclasses.replace(run, status=rec.QUEUED))
            self._ended[run.run_id] = asyncio.get_running_loop().create_future()
            last = await self._store.events_after(run.run_id, 0, limit=1_000_000)
            self._eventlog.open(run.run_id, run.session_id, last[-1][0] if last else 0)
            if len(queue) == 1:
                self._ready.append(run.run_id)
            recovered += 1
        await self._dispatch()
        return recovered

    async def drain(self, grace: float) -> None:
        """Stop taking runs; let executing ones reach a superstep boundary, then hand the rest back."""
        self._accepting = False
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


def _check_nodes(loaded: LoadedGraph, options: rec.RunOptions) -> None:
    for field in ("interrupt_before", "interrupt_after"):
        for node in getattr(options, field):
            if node not in loaded.nodes:
                raise InvalidArgument(
                    f"options.{field}", f"graph {loaded.spec.graph_id!r} has no node {node!r}"
                )


async def _require_pending_interrupt(loaded: LoadedGraph, session_id: str) -> None:
    state = await loaded.graph.aget_state({"configurable": {"thread_id": session_id}})
    if not state.interrupts:
        raise FailedPrecondition(
            f"session {session_id!r} has no pending interrupt to resume; start a run with input instead"
        )
