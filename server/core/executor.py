"""Execute one run: stream the graph, turn its output into events, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl, Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Command, StreamMode

from stepstream.ratelimiter.client import Limiter, use_limiter
from stepstream.server.core import context as ctx
from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.durability import DurableEvents
from stepstream.server.core.eventlog import EventLog
from stepstream.server.core.events import EventItem
from stepstream.server.core.jsonio import dumps, loads
from stepstream.server.core.ports import NOTIFY_QUEUE, RunEndWrites, RunSaver, Store, no_end_writes
from stepstream.server.core.registry import GraphRegistry
from stepstream.server.core.tracing import Attempt, RunTelemetry
from stepstream.server.core.translate import StreamTranslator
from stepstream.server.settings import Durability

log = logging.getLogger(__name__)

STREAM_MODES: list[StreamMode] = ["debug", "messages", "custom", "values"]
# Where Pregel looks for the runtime a run inherits (langgraph._internal._constants
# CONFIG_KEY_RUNTIME, in langgraph 1.2): a store given there is the one the graph's nodes see
# (runtime.store, `store: BaseStore` parameters), in place of one compiled in. Passing it per
# run lets one compiled graph serve every tenant with the tenant's own view of the store.
CONFIG_KEY_RUNTIME = "__pregel_runtime"


@dataclasses.dataclass
class Execution:
    """What the run manager knows of a run while it executes here."""

    run: rec.Run
    control: RunControl = dataclasses.field(default_factory=RunControl)
    task: asyncio.Task[rec.Run] | None = None
    rollback: bool = False
    cancel_reason: str = ""
    # Set when the replica stops: the run is handed back, not cancelled.
    handing_back: bool = False
    # Set when another replica took the run over (our lease lapsed): stop and write nothing.
    fenced: bool = False
    # The run's session was created with it, here: its thread has no checkpoint yet.
    new_session: bool = False


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an attempt at a run ended, before it is stored."""

    status: rec.RunStatus
    # The graph's state values (succeeded, interrupted).
    values: Any = None
    interrupts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: BaseException | None = None
    # Why it was cancelled.
    reason: str = ""


def graph_config(run: rec.Run, default_recursion_limit: int, default_max_concurrency: int) -> RunnableConfig:
    opts = run.options
    config: RunnableConfig = {
        "configurable": {**opts.configurable, "thread_id": run.session_id},
        # LangGraph records metadata.run_id on each checkpoint; re-entering with the same
        # run id resumes from this run's last checkpoint instead of re-applying the input.
        "metadata": {**opts.metadata, "run_id": run.run_id, "graph_id": run.graph_id},
        "run_id": callback_run_id(run.run_id),
        "recursion_limit": opts.recursion_limit or default_recursion_limit,
    }
    max_concurrency = opts.max_concurrency or default_max_concurrency
    if max_concurrency:
        config["max_concurrency"] = max_concurrency
    return config


def with_store(config: RunnableConfig, store: BaseStore) -> RunnableConfig:
    """`config` with the run's store, as LangGraph's server gives a graph its store."""
    config["configurable"] = {**config.get("configurable", {}), CONFIG_KEY_RUNTIME: Runtime(store=store)}
    return config


def callback_run_id(run_id: str) -> uuid.UUID:
    """LangChain callbacks want a UUID; a caller-chosen run id maps to a stable one."""
    try:
        return uuid.UUID(run_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"stepstream:run:{run_id}")


def graph_input(run: rec.Run) -> Any:
    if run.command_json:
        spec = loads(run.command_json)
        resume = spec["resume_by_id"] or (spec["resume"] if spec["has_resume"] else None)
        return Command(
            resume=resume,
            update=spec.get("update"),
            goto=tuple(spec.get("goto") or ()),
        )
    if run.input_json:
        return loads(run.input_json)
    return None


class RunExecutor:
    def __init__(
        self,
        registry: GraphRegistry,
        eventlog: EventLog,
        store: Store,
        saver: RunSaver,
        replica: str,
        recursion_limit: int,
        limiter: Limiter | None = None,
        telemetry: RunTelemetry | None = None,
        durability: Durability = Durability.SYNC,
        stores: Callable[[str], BaseStore | None] | None = None,
    ) -> None:
        # "sync": a superstep starts once the one before is durable; "async": while it commits.
        self._durability = Durability(durability)
        self._limiter = limiter
        # Traces and metrics of runs; None when telemetry is off (the hooks below cost a check).
        self.telemetry = telemetry
        self._registry = registry
        self._eventlog = eventlog
        self._store = store
        self._saver = saver
        self._replica = replica
        # What else the transaction that ends a run stores (the core sets its webhooks').
        self.end_writes: RunEndWrites = no_end_writes
        self._recursion_limit = recursion_limit
        # A tenant's view of the long-term store, for the runs of graphs that use it.
        self._stores = stores

    async def execute(self, execution: Execution) -> rec.Run:
        attempt = self.telemetry.attempt(execution.run) if self.telemetry is not None else None
        if attempt is None:
            return await self._limited(execution, None)
        if (stored := attempt.stored_context()) is not None:
            run_id = execution.run.run_id
            self._eventlog.append(run_id, [], [self._store.trace_context_saved(run_id, stored)])
        try:
            with attempt.active():
                ended = await self._limited(execution, attempt)
        except BaseException as exc:
            attempt.end(
                dataclasses.replace(execution.run, status=rec.RunStatus.FAILED, error_type=type(exc).__name__)
            )
            raise
        attempt.end(ended, execution.cancel_reason)
        return ended

    async def _limited(self, execution: Execution, attempt: Attempt | None) -> rec.Run:
        # Nodes (and the tasks LangGraph starts for them) find the limiter in their context.
        with (
            use_limiter(self._limiter) if self._limiter is not None else contextlib.nullcontext(),
            self._saver.new_thread(execution.run.session_id)
            if execution.new_session
            else contextlib.nullcontext(),
        ):
            return await self._execute(execution, attempt)

    async def _execute(self, execution: Execution, attempt: Attempt | None) -> rec.Run:
        run = execution.run
        translator = StreamTranslator()
        outcome: Outcome | None = None

        def release(items: list[EventItem], saves: Sequence[asyncio.Future[None]]) -> None:
            if attempt is not None:
                attempt.observe(items)
            self._eventlog.append(run.run_id, items, after=saves)

        # Each batch is told only once the checkpoints it reports are durable (durability.py).
        durable = DurableEvents(self._saver, self._durability, run.run_id, run.session_id, release)
        try:
            loaded = self._registry.get(run.graph_id)
            config = graph_config(run, self._recursion_limit, loaded.spec.max_concurrency)
            if loaded.spec.store and self._stores is not None and (store := self._stores(run.owner)):
                config = with_store(config, store)
            stream = loaded.graph.astream(
                graph_input(run),
                config,
                stream_mode=STREAM_MODES,
                subgraphs=True,
                version="v2",
                interrupt_before=list(run.options.interrupt_before) or None,
                interrupt_after=list(run.options.interrupt_after) or None,
                control=execution.control,
                # Validated as it was at the start: the stored JSON becomes the graph's type again.
                context=ctx.validate(loaded, loads(run.context_json), "context_json")
                if run.context_json
                else None,
            )
            with durable.saving():
                async for part in stream:
                    items = list(translator.feed(part))
                    if items:
                        await durable.report(items)
            await durable.flush()
            if translator.interrupted or run.options.interrupt_before or run.options.interrupt_after:
                await durable.committed()
                state = await loaded.graph.aget_state(config)
                interrupts = ev.interrupt_dicts(state.interrupts)
                if interrupts or state.next:
                    outcome = Outcome(rec.RunStatus.INTERRUPTED, values=state.values, interrupts=interrupts)
            if outcome is None:
                outcome = Outcome(rec.RunStatus.SUCCEEDED, values=translator.last_values)
        except GraphDrained:
            await durable.settle()
            return await self._hand_back(run)
        except asyncio.CancelledError:
            durable.drop()
            if execution.fenced:
                return dataclasses.replace(run, status=rec.RunStatus.QUEUED)
            if execution.handing_back:
                return await self._hand_back(run)
            if execution.rollback:
                # Saves still queued would otherwise land after the delete.
                await durable.committed(raise_errors=False)
                await self._saver.adelete_for_runs([run.run_id])
            outcome = Outcome(rec.RunStatus.CANCELLED, reason=execution.cancel_reason or "cancelled")
        except Exception as exc:
            log.info(
                "run %s failed: %s: %s", run.run_id, type(exc).__name__, exc, exc_info=not translator.seen
            )
            outcome = Outcome(rec.RunStatus.FAILED, error=exc)
            # What the graph reported before it failed: supersteps whose checkpoints committed.
            await durable.settle()
        if outcome.status is not rec.RunStatus.SUCCEEDED:
            return await self._finish(execution, outcome)
        try:
            # Told in the transaction of the run's last saves (or after it), not one commit later.
            return await self._finish(execution, outcome, after=durable.commits)
        except Exception as exc:
            if (failed := durable.failure()) is None:
                raise
            # A save failed, so the run did not succeed; nothing of its "finished" was stored.
            log.info("run %s failed: a checkpoint save failed: %s", run.run_id, exc)
            return await self._finish(execution, Outcome(rec.RunStatus.FAILED, error=failed))

    async def _finish(
        self, execution: Execution, outcome: Outcome, after: Sequence[asyncio.Future[None]] = ()
    ) -> rec.Run:
        run = execution.run
        status, interrupts, error = outcome.status, outcome.interrupts, outcome.error
        values_json = dumps(outcome.values) if outcome.values is not None else ""
        event: EventItem
        if status in (rec.RunStatus.SUCCEEDED, rec.RunStatus.INTERRUPTED):
            event = (ev.RUN_FINISHED, (), {"values_json": values_json, "interrupts": interrupts})
        elif status is rec.RunStatus.FAILED:
            event = (ev.RUN_FAILED, (), {"error_type": type(error).__name__, "error_message": str(error)})
        else:
            event = (ev.RUN_CANCELLED, (), {"reason": outcome.reason, "rolled_back": execution.rollback})
        ended = dataclasses.replace(
            run,
            status=status,
            ended_at=time.time(),
            last_seq=self._eventlog.last_seq(run.run_id) + 1,
            values_json=values_json,
            interrupts=interrupts,
            error_type=type(error).__name__ if error else "",
            error_message=str(error) if error else "",
        )
        writes = [
            self._store.run_ended(ended, self._replica),
            self._store.session_after_run(
                run.session_id, run.run_id, rec.SESSION_STATUS_AFTER[status], ended.ended_at or 0.0
            ),
            *self.end_writes(ended, self._replica),
        ]
        await asyncio.shield(self._eventlog.append(run.run_id, [event], writes, after))
        return ended

    async def _hand_back(self, run: rec.Run) -> rec.Run:
        """Leave the run queued so it continues from its last checkpoint (here or elsewhere)."""
        writes = [self._store.run_handed_back(run.run_id, self._replica, run.attempt)]
        writes += self._store.notify_writes(NOTIFY_QUEUE + run.session_id)
        await asyncio.shield(self._eventlog.append(run.run_id, [], writes))
        return dataclasses.replace(run, status=rec.RunStatus.QUEUED)
