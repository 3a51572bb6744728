"""The core of one replica: everything a servicer calls, and nothing of gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from stepstream.ratelimiter.client import Limiter, open_limiter
from stepstream.ratelimiter.config import load_settings
from stepstream.security.tls import sidecar_credentials
from stepstream.server.core import context as ctx
from stepstream.server.core import records as rec
from stepstream.server.core.admission import TenantAdmission
from stepstream.server.core.assistants import AssistantFields, AssistantManager, default_assistant_id
from stepstream.server.core.dispatch import Dispatcher
from stepstream.server.core.errors import FailedPrecondition, InvalidArgument, NotFound
from stepstream.server.core.eventlog import EventLog
from stepstream.server.core.events import EventFilter, RunEvent
from stepstream.server.core.executor import RunExecutor
from stepstream.server.core.inspector.service import Inspector
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.longterm import LongTermStore
from stepstream.server.core.pages import page_size
from stepstream.server.core.registry import (
    ConfigError,
    GraphRegistry,
    GraphSpec,
    LoadedGraph,
    read_config,
    read_env,
    read_store_config,
)
from stepstream.server.core.runs import RunManager, StartRequest
from stepstream.server.core.schedules.crons import CronManager
from stepstream.server.core.schedules.destinations import DestinationPolicy, parse_allow
from stepstream.server.core.schedules.webhooks import WebhookManager, webhook_settings
from stepstream.server.core.sessions import SessionManager
from stepstream.server.core.start import StartRunRequest, parse_start
from stepstream.server.core.tracing import RunTelemetry
from stepstream.server.settings import ServerSettings
from stepstream.server.storage.backend import Database

log = logging.getLogger(__name__)


def open_run_limiter(settings: ServerSettings) -> Limiter | None:
    """The limiter graph nodes take tokens from: the sidecar, the embedded one, or none."""
    if settings.ratelimiter_address:
        key = settings.ratelimiter_api_key
        credentials = sidecar_credentials(
            settings.ratelimiter_address,
            settings.ratelimiter_tls_ca_file,
            settings.ratelimiter_tls_cert_file,
            settings.ratelimiter_tls_key_file,
            allow_plaintext_remote=settings.allow_unauthenticated,
        )
        return open_limiter(
            settings.ratelimiter_address,
            credentials=credentials,
            metadata=[("x-api-key", key)] if key else [],
            on_unavailable=settings.ratelimiter_on_unavailable,
            expected_replicas=settings.ratelimiter_expected_replicas,
        )
    if settings.limits_path:
        return open_limiter(None, load_settings(settings.limits_path))
    return None


class Core:
    """One replica's core: the operations the doors call, each deciding and raising domain errors."""

    def __init__(self, settings: ServerSettings, specs: list[GraphSpec] | None = None) -> None:
        self.settings = settings
        self._specs = specs
        # Storage implements the core's ports (ports.py); this is the one place that picks it.
        self.database = Database(settings.db_url, settings.max_writes_per_commit, settings.db_retry_seconds)
        self.engine = self.database.engine
        self.saver = self.database.saver
        self.store = self.database.store
        self.registry = GraphRegistry()
        self.eventlog = EventLog(self.store, self.database.writer)
        self.limiter = open_run_limiter(settings)
        # The long-term store (LangGraph's BaseStore), opened at start with the config's section.
        self.longterm = LongTermStore()
        # Traces and metrics of runs when this process set telemetry up (stepstream.telemetry).
        self.telemetry = RunTelemetry.for_replica(settings.replica)
        self.executor = RunExecutor(
            self.registry,
            self.eventlog,
            self.store,
            self.saver,
            settings.replica,
            settings.default_recursion_limit,
            self.limiter,
            self.telemetry,
            settings.durability,
            stores=self.longterm.for_run,
        )
        self.runs = RunManager(
            settings, self.registry, self.store, self.eventlog, self.executor, self.database.queue, self.saver
        )
        if self.telemetry is not None:
            self.eventlog.on_streamed = self.telemetry.streamed
        self.sessions = SessionManager(
            self.registry, self.store, self.database.writer, self.runs, self.saver, self.database.catalog
        )
        self.assistants = AssistantManager(self.registry, self.database.assistants)
        self.dispatcher = Dispatcher(
            settings, self.runs, self.eventlog, self.database.queue, self.database.listener
        )
        self.admission = TenantAdmission(
            settings.tenant_runs_per_second,
            settings.tenant_runs_burst,
            settings.tenant_max_runs_in_flight,
            self.store.runs_in_flight,
            settings.queue_full_retry_after,
        )
        # Heartbeat rows and the read-only views of the inspector (core/inspector).
        self.inspector = Inspector(
            self.database.inspector,
            self.store,
            settings.replica,
            settings.inspector_heartbeat_seconds,
            lambda: tuple(self.registry.ids()),
            lambda: self.runs.executing,
            lambda: self.dispatcher.leases,
            lambda: not self.runs.accepting,
            self.limiter,
            settings.ratelimiter_address,
            settings.jaeger_query_url,
            settings.jaeger_ui_url,
        )
        # Crons and webhooks (core/schedules): a run's webhook delivery is stored with its end.
        self.webhooks = WebhookManager(
            webhook_settings(settings),
            self.database.schedules,
            settings.replica,
            DestinationPolicy(parse_allow(settings.webhook_allow)),
        )
        self.executor.end_writes = self.webhooks.end_writes
        self.crons = CronManager(
            self.database.schedules,
            self,
            settings.replica,
            settings.lease_seconds,
            settings.cron_poll_seconds,
        )
        self._retention: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._pruned_until = 0.0

    async def start(self) -> None:
        if self.settings.migrate_on_start:
            await self.database.migrate()
        specs = self._specs
        if specs is None and self.settings.config_path:
            specs = read_config(self.settings.config_path)
            # The config's "env" fills in what the process environment does not already set.
            for key, value in read_env(self.settings.config_path).items():
                os.environ.setdefault(key, value)
        await self.registry.load(specs or [], self.saver)
        await self._open_store()
        # The one tenant of a server without authentication has its default assistants at once
        # (other tenants' are made on their first use: assistants.py).
        await self.assistants.ensure_defaults(self.settings.default_owner)
        self.database.start()
        # Claims runs left queued, and those whose replica died once their leases lapse.
        await self.dispatcher.start()
        await self.inspector.start()
        self.webhooks.start()
        self.crons.start()
        if self.settings.session_ttl_seconds or self.settings.keep_checkpoints:
            self._retention = asyncio.create_task(self._retain(), name="retention")
        if self.telemetry is not None:
            self.telemetry.watch_runs(lambda: self.runs.executing, self.database.queue.queue_depth)

    async def stop(self, grace: float | None = None) -> None:
        # No new fire or delivery from here on; what this replica held is taken over elsewhere.
        await self.crons.close()
        await self.webhooks.close()
        await self.runs.drain(self.settings.shutdown_grace_seconds if grace is None else grace)
        await self.inspector.stop()
        await self.dispatcher.close()
        await self.database.close_store()
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        await self.database.close()
        if self.limiter is not None:
            await self.limiter.close()

    async def _open_store(self) -> None:
        """The long-term store on the database, its TTL sweeper running when TTLs are set."""
        path = self.settings.config_path
        section = read_store_config(path).as_langgraph() if path else {}
        try:
            stores = await self.database.open_store(section)
        except (ValueError, TypeError, ImportError) as exc:
            # The section's shape was checked with the file; what fails now is the embedder.
            raise ConfigError(f'{path}: key "store.index.embed": {exc}') from exc
        self.longterm.attach(stores)

    # -- graphs -------------------------------------------------------------------------------
    def graphs(self) -> list[LoadedGraph]:
        return self.registry.all()

    def graph(self, graph_id: str) -> LoadedGraph:
        """The graph, or NotFound."""
        return self.registry.get(graph_id)

    def context_schema(self, graph_id: str) -> str:
        """JSON Schema (text) of the context the graph's nodes read; "" when it declares none."""
        return ctx.schema_json(self.registry.get(graph_id))

    # -- assistants (assistants.py) ----------------------------------------------------------
    async def create_assistant(
        self,
        owner: str,
        graph_id: str,
        fields: AssistantFields,
        *,
        assistant_id: str = "",
        if_exists_return: bool = False,
    ) -> rec.Assistant:
        return await self.assistants.create(
            owner, graph_id, fields, assistant_id=assistant_id, if_exists_return=if_exists_return
        )

    async def get_assistant(self, owner: str, assistant_id: str) -> rec.Assistant:
        return await self.assistants.get(owner, assistant_id)

    async def update_assistant(self, owner: str, assistant_id: str, fields: AssistantFields) -> rec.Assistant:
        """Save a new version from the live one, with the fields given set, and make it live."""
        return await self.assistants.update(owner, assistant_id, fields)

    async def set_assistant_version(self, owner: str, assistant_id: str, version: int) -> rec.Assistant:
        return await self.assistants.set_version(owner, assistant_id, version)

    async def assistant_versions(
        self, owner: str, assistant_id: str, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]:
        return await self.assistants.versions(owner, assistant_id, size, token)

    async def delete_assistant(self, owner: str, assistant_id: str) -> None:
        await self.assistants.delete(owner, assistant_id)

    async def search_assistants(
        self, owner: str, query: rec.AssistantQuery, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]:
        return await self.assistants.search(owner, query, size, token)

    # -- sessions -----------------------------------------------------------------------------
    async def create_session(
        self,
        owner: str,
        graph_id: str,
        *,
        session_id: str = "",
        metadata: Any = None,
        bind_later: bool = False,
    ) -> rec.Session:
        """A new session; with `bind_later` and no graph, its first run binds it (bind_session)."""
        return await self.sessions.create(
            owner, graph_id, session_id=session_id, metadata=metadata, bind_later=bind_later
        )

    async def get_session(self, owner: str, session_id: str) -> rec.Session:
        return await self.sessions.get(owner, session_id)

    async def list_sessions(
        self, owner: str, query: rec.SessionQuery, size: int, token: str
    ) -> tuple[list[rec.Session], str]:
        """A page of the owner's sessions matching `query` (its limit and offset are the page's)."""
        return await self.sessions.list_sessions(owner, query, size, token)

    async def search_sessions(self, owner: str, query: rec.SessionQuery) -> list[rec.Session]:
        """The owner's sessions matching every filter of `query`, in its order, paged by offset."""
        return await self.sessions.search(owner, query)

    async def patch_session(self, owner: str, session_id: str, metadata: Any) -> rec.Session:
        """Merge `metadata` into the session's metadata (a null removes its key)."""
        return await self.sessions.patch(owner, session_id, metadata)

    async def copy_session(self, owner: str, session_id: str, copy_id: str = "") -> rec.Session:
        """A new session with an idle one's metadata and whole checkpoint history."""
        return await self.sessions.copy(owner, session_id, copy_id)

    async def bind_session(
        self, owner: str, session_id: str, graph_id: str, metadata: dict[str, Any]
    ) -> None:
        """Bind a session to the graph its next run runs (LangGraph threads take theirs from
        their runs), merging `metadata` into its own."""
        await self.sessions.bind(owner, session_id, graph_id, metadata)

    async def session_snapshot(self, owner: str, session_id: str, checkpoint_id: str = "") -> Any:
        """The session's LangGraph StateSnapshot; None while it has no graph."""
        return await self.sessions.snapshot(owner, session_id, checkpoint_id)

    async def session_snapshots(
        self,
        owner: str,
        session_id: str,
        limit: int,
        before_checkpoint_id: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> list[Any]:
        """The session's checkpoints as StateSnapshots, newest first."""
        return await self.sessions.snapshots(owner, session_id, limit, before_checkpoint_id, metadata)

    async def run_snapshots(self, owner: str, run_id: str) -> list[Any]:
        """The checkpoints a run wrote in its session's root graph, oldest first."""
        return await self.sessions.run_snapshots(owner, run_id)

    async def delete_session(self, owner: str, session_id: str, force: bool) -> None:
        await self.sessions.delete(owner, session_id, force)

    async def session_state(self, owner: str, session_id: str, checkpoint_id: str) -> dict[str, Any]:
        return await self.sessions.state(owner, session_id, checkpoint_id)

    async def session_history(
        self, owner: str, session_id: str, size: int, token: str
    ) -> tuple[list[dict[str, Any]], str]:
        return await self.sessions.history(owner, session_id, size, token)

    async def update_session_state(
        self, owner: str, session_id: str, values: Any, as_node: str, checkpoint_id: str
    ) -> str:
        """Apply `values` as if `as_node` wrote them; the new checkpoint's id."""
        return await self.sessions.update_state(owner, session_id, values, as_node, checkpoint_id)

    # -- runs ---------------------------------------------------------------------------------
    async def start_run(self, req: StartRunRequest) -> rec.Run:
        """Start a run on a session (a new one when session_id is empty), of a graph or as an
        assistant: then with the assistant's settings under the run's own, key by key."""
        start, new_session = await self._prepare_start(req)
        await self.admission.admit(req.owner)  # per-tenant admission (admission.py)
        return await self.runs.start(start, new_session)

    async def check_start(self, req: StartRunRequest) -> str:
        """Every check start_run makes of a request before admission, storing nothing; the
        graph it would run (a cron checks its runs' request so: schedules/crons.py)."""
        start, _ = await self._prepare_start(req)
        return start.graph_id

    async def _prepare_start(self, req: StartRunRequest) -> tuple[StartRequest, rec.Session | None]:
        parsed = parse_start(req)
        if req.webhook:
            await self.webhooks.check(req.owner, req.webhook, req.webhook_field)
        graph_id, new_session, assistant = req.graph_id, None, None
        if req.assistant_id:
            assistant = await self.assistants.get(req.owner, req.assistant_id)
            graph_id = assistant.graph_id
        if req.session_id:
            session = await self.store.get_session(req.owner, req.session_id)
            if graph_id and graph_id != session.graph_id:
                raise InvalidArgument(
                    "assistant_id" if assistant else "graph_id",
                    f"session {req.session_id!r} runs graph {session.graph_id!r}",
                )
            graph_id = session.graph_id
        else:
            new_session = self.sessions.new_session(req.owner, graph_id)
        options, context = parsed.options, parsed.context
        if assistant is not None:
            options = dataclasses.replace(
                options,
                configurable={**assistant.config, **options.configurable},
                metadata={**assistant.metadata, **options.metadata},
            )
            if assistant.context:
                context = {**assistant.context, **(context or {})}
        ctx.validate(self.registry.get(graph_id), context, req.context_field)
        start = StartRequest(
            owner=req.owner,
            graph_id=graph_id,
            session_id=req.session_id,
            input_json=req.input_json,
            command=parsed.command,
            options=options,
            run_id=req.run_id,
            context_json=dumps(context) if context is not None else None,
            # A run that names only a graph runs as its default assistant, without reading it
            # (version 0: no saved settings applied), so a plain start costs no extra query.
            assistant_id=assistant.assistant_id if assistant else default_assistant_id(graph_id),
            assistant_version=assistant.version if assistant else 0,
        )
        return start, new_session

    def run_events(
        self, run: rec.Run, after_seq: int, event_filter: EventFilter
    ) -> AsyncIterator[list[RunEvent]]:
        """The events of a run the caller was given (by start_run or get_run), live until it ends."""
        return self.eventlog.follow(run.run_id, after_seq, event_filter)

    async def join_run(
        self, owner: str, run_id: str, after_seq: int, event_filter: EventFilter
    ) -> AsyncIterator[list[RunEvent]]:
        """A run's events after `after_seq`, live until it ends; NOT_FOUND for another owner's run."""
        local = self.runs.executing_here(run_id)
        if local is None or local.owner != owner:
            await self.store.get_run(owner, run_id)  # NotFound for another owner's run
        async for batch in self.eventlog.follow(run_id, after_seq, event_filter):
            yield batch

    async def get_run(self, owner: str, run_id: str) -> rec.Run:
        return await self.store.get_run(owner, run_id)

    async def list_runs(
        self, owner: str, session_id: str, statuses: Sequence[rec.RunStatus], size: int, token: str
    ) -> tuple[list[rec.Run], str]:
        return await self.store.list_runs(owner, session_id, statuses, page_size(size), token)

    async def list_runs_from(
        self, owner: str, session_id: str, statuses: Sequence[rec.RunStatus], limit: int, offset: int
    ) -> list[rec.Run]:
        """The session's runs, newest first, the first `offset` skipped."""
        runs, _ = await self.store.list_runs(owner, session_id, statuses, page_size(limit + offset), "")
        return runs[offset:]

    async def run_last_seq(self, owner: str, run_id: str) -> int:
        """The seq of the run's last stored event (0: none yet); NotFound for another owner's run."""
        await self.store.get_run(owner, run_id)
        return await self.database.catalog.last_event_seq(run_id)

    async def cancel_run(self, owner: str, run_id: str, rollback: bool) -> rec.Run:
        return await self.runs.cancel(owner, run_id, rollback)

    def run_abandoned(self, owner: str, run_id: str) -> None:
        """The client streaming a run it asked to be cancelled with (gRPC cancel_on_disconnect,
        HTTP on_disconnect="cancel") went away before the run ended: cancel it, in the
        background (the stream is being closed); a run that ended meanwhile is left alone."""
        task = asyncio.get_running_loop().create_task(self._cancel_abandoned(owner, run_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_abandoned(self, owner: str, run_id: str) -> None:
        try:
            await self.runs.cancel(owner, run_id, rollback=False, reason="client disconnected")
        except (FailedPrecondition, NotFound):
            pass  # it ended (or went with its stateless session) before the cancel reached it
        except Exception:
            log.exception("could not cancel run %s after its client went away", run_id)

    async def cancel_session_run(self, owner: str, session_id: str, rollback: bool) -> rec.Run:
        """Cancel the run active on a session (the oldest, if several wait)."""
        active = await self.runs.active_runs(session_id)
        if not active:
            raise FailedPrecondition(f"session {session_id!r} has no active run to cancel")
        return await self.runs.cancel(owner, active[0][0], rollback)

    async def wait_run(self, owner: str, run_id: str, timeout: float | None) -> rec.Run:
        return await self.runs.wait(owner, run_id, timeout)

    async def _retain(self) -> None:
        """Delete expired sessions and prune checkpoint history, in the background."""
        while True:
            await asyncio.sleep(self.settings.retention_interval_seconds)
            try:
                await self.retain_once()
            except Exception:
                log.exception("retention pass failed; retrying next interval")

    async def retain_once(self) -> None:
        """One retention pass. Each session is handled under the lock runs start under, and
        never while a run is active on it (a rollback needs the checkpoints before the run)."""
        now = time.time()
        if self.settings.session_ttl_seconds:
            for session_id in await self.store.expired_sessions(now - self.settings.session_ttl_seconds):
                async with self.runs.session_lock(session_id):
                    if not await self.runs.session_busy(session_id):
                        await self.saver.adelete_thread(session_id)
                        await self.store.delete_session_rows(session_id)
        if self.settings.keep_checkpoints:
            for session_id in await self.store.sessions_updated_since(self._pruned_until):
                async with self.runs.session_lock(session_id):
                    if not await self.runs.session_busy(session_id):
                        await self.saver.aprune_history(self.settings.keep_checkpoints, [session_id])
            # Sessions touched after `now` are pruned next time.
            self._pruned_until = now
