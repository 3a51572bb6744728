"""Sessions (LangGraph threads): lifecycle, state, history and state updates."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import StateSnapshot

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from stepstream.server.core.ids import new_id
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.pages import decode_page_token, encode_page_token, page_size
from stepstream.server.core.ports import RunSaver, SessionCatalog, Store, Writer
from stepstream.server.core.registry import GraphRegistry
from stepstream.server.core.runs import RunManager

SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def snapshot_dict(snapshot: StateSnapshot) -> dict[str, Any]:
    """A checkpoint's state in the shape of SessionState (events.proto conventions)."""
    configurable = snapshot.config.get("configurable", {}) if snapshot.config else {}
    parent = (snapshot.parent_config or {}).get("configurable", {})
    metadata = snapshot.metadata or {}
    return {
        "values_json": dumps(snapshot.values),
        "next": list(snapshot.next),
        "next_tasks": [{"task_id": t.id, "node": t.name, "namespace": []} for t in snapshot.tasks],
        "interrupts": ev.interrupt_dicts(snapshot.interrupts),
        "checkpoint_id": configurable.get("checkpoint_id", ""),
        "parent_checkpoint_id": parent.get("checkpoint_id", ""),
        "step": int(metadata.get("step", 0) or 0),
        "source": str(metadata.get("source", "") or ""),
        "created_at": snapshot.created_at or "",
        "run_id": str(metadata.get("run_id", "") or ""),
    }


class SessionManager:
    def __init__(
        self,
        registry: GraphRegistry,
        store: Store,
        writer: Writer,
        runs: RunManager,
        saver: RunSaver,
        catalog: SessionCatalog,
    ) -> None:
        self._registry = registry
        self._store = store
        self._writer = writer
        self._runs = runs
        self._saver = saver
        self._catalog = catalog

    def new_session(
        self,
        owner: str,
        graph_id: str,
        *,
        session_id: str = "",
        metadata: Any = None,
        bind_later: bool = False,
    ) -> rec.Session:
        """A session record to insert (validated, not yet stored). With `bind_later` the graph
        may be empty: the first run binds it (`bind`), as a LangGraph thread is created."""
        if graph_id or not bind_later:
            self._registry.get(graph_id)
        if session_id and not SESSION_ID.match(session_id):
            raise InvalidArgument("session_id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgument("metadata_json", "must be a JSON object")
        now = time.time()
        return rec.Session(
            session_id or new_id(), owner, graph_id, rec.SessionStatus.IDLE, metadata or {}, now, now
        )

    async def create(
        self,
        owner: str,
        graph_id: str,
        *,
        session_id: str = "",
        metadata: Any = None,
        bind_later: bool = False,
    ) -> rec.Session:
        session = self.new_session(
            owner, graph_id, session_id=session_id, metadata=metadata, bind_later=bind_later
        )
        try:
            await self._writer.write([self._store.insert_session(session)])
        except Exception as exc:
            if self._store.is_unique_violation(exc):
                raise AlreadyExists(f"session {session.session_id!r} already exists") from None
            raise
        return session

    async def get(self, owner: str, session_id: str) -> rec.Session:
        return await self._store.get_session(owner, session_id)

    async def list_sessions(
        self, owner: str, query: rec.SessionQuery, size: int, token: str
    ) -> tuple[list[rec.Session], str]:
        """A page of `search`: the token holds where the next page starts."""
        offset = int(decode_page_token(token)[0]) if token else 0
        if offset < 0:
            raise InvalidArgument("page_token", "is not a token this server issued")
        limit = page_size(size)
        found = await self.search(owner, dataclasses.replace(query, limit=limit + 1, offset=offset))
        more = len(found) > limit
        return found[:limit], encode_page_token(offset + limit, "") if more else ""

    async def delete(self, owner: str, session_id: str, force: bool) -> None:
        await self._store.get_session(owner, session_id)
        active = await self._runs.active_runs(session_id)
        if active:
            if not force:
                raise FailedPrecondition(f"session {session_id!r} has an active run; cancel it or set force")
            for run_id, _, _ in active:
                with contextlib.suppress(FailedPrecondition):  # it ended meanwhile
                    await self._runs.cancel(owner, run_id, rollback=False, reason="session deleted")
        await self._saver.adelete_thread(session_id)
        await self._store.delete_session_rows(session_id)

    async def state(self, owner: str, session_id: str, checkpoint_id: str) -> dict[str, Any]:
        session = await self._store.get_session(owner, session_id)
        graph = self._registry.get(session.graph_id).graph
        configurable = {"thread_id": session_id}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
        snapshot = await graph.aget_state({"configurable": configurable})
        if checkpoint_id and snapshot.created_at is None:
            raise NotFound(f"checkpoint {checkpoint_id!r} not found in session {session_id!r}")
        return snapshot_dict(snapshot)

    async def history(
        self, owner: str, session_id: str, size: int, token: str
    ) -> tuple[list[dict[str, Any]], str]:
        session = await self._store.get_session(owner, session_id)
        graph = self._registry.get(session.graph_id).graph
        limit = page_size(size)
        before: RunnableConfig | None = None
        if token:
            _, checkpoint_id = decode_page_token(token)
            before = {"configurable": {"thread_id": session_id, "checkpoint_id": checkpoint_id}}
        states = []
        async for snapshot in graph.aget_state_history(
            {"configurable": {"thread_id": session_id}}, before=before, limit=limit + 1
        ):
            states.append(snapshot_dict(snapshot))
        more = len(states) > limit
        states = states[:limit]
        return states, encode_page_token(0, states[-1]["checkpoint_id"]) if more else ""

    async def update_state(
        self, owner: str, session_id: str, values: Any, as_node: str, checkpoint_id: str
    ) -> str:
        session = await self._store.get_session(owner, session_id)
        if await self._runs.session_busy(session_id):
            raise FailedPrecondition(
                f"session {session_id!r} has an active run; update its state when it ends"
            )
        loaded = self._registry.get(session.graph_id)
        if as_node and as_node not in loaded.nodes:
            raise InvalidArgument("as_node", f"graph {session.graph_id!r} has no node {as_node!r}")
        configurable = {"thread_id": session_id}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
        try:
            config = await loaded.graph.aupdate_state(
                {"configurable": configurable}, values, as_node=as_node or None
            )
        except Exception as exc:
            raise InvalidArgument("values_json", f"cannot be applied: {type(exc).__name__}: {exc}") from None
        return str(config["configurable"]["checkpoint_id"])

    # -- sessions as users search and change them (both doors) --------------------------------
    async def search(self, owner: str, query: rec.SessionQuery) -> list[rec.Session]:
        if query.metadata and not isinstance(query.metadata, dict):
            raise InvalidArgument("metadata_json", "must be a JSON object")
        return await self._catalog.search(owner, query)

    async def patch(self, owner: str, session_id: str, metadata: Any) -> rec.Session:
        """Merge `metadata` into the session's: keys given replace keys held, a null removes one."""
        if not isinstance(metadata, dict):
            raise InvalidArgument("metadata_json", "must be a JSON object")
        session = await self._catalog.patch(owner, session_id, metadata, time.time())
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        return session

    async def bind(self, owner: str, session_id: str, graph_id: str, metadata: dict[str, Any]) -> None:
        """Bind a session to the graph its next run runs, and merge `metadata` into its own. A
        session may run another graph than its last run did: an idle one switches; one with an
        active run of another graph refuses (FailedPrecondition)."""
        self._registry.get(graph_id)
        rebind = not await self._runs.session_busy(session_id)
        bound = await self._catalog.bind(owner, session_id, graph_id, metadata, rebind)
        if bound is None:
            raise NotFound(f"session {session_id!r} not found")
        if bound != graph_id:
            raise FailedPrecondition(
                f"session {session_id!r} has an active run of graph {bound!r}; "
                f"start {graph_id!r} when it ends"
            )

    async def copy(self, owner: str, session_id: str, copy_id: str = "") -> rec.Session:
        """A new session with the metadata and the whole checkpoint history of an idle one."""
        source = await self._store.get_session(owner, session_id)
        async with self._runs.session_lock(session_id):
            if await self._runs.session_busy(session_id):
                raise FailedPrecondition(f"session {session_id!r} has an active run; copy it when it ends")
            copy = self.new_session(
                owner, source.graph_id, session_id=copy_id, metadata=source.metadata, bind_later=True
            )
            copy = dataclasses.replace(copy, status=source.status)
            try:
                await self._writer.write([self._store.insert_session(copy)])
            except Exception as exc:
                if self._store.is_unique_violation(exc):
                    raise AlreadyExists(f"session {copy.session_id!r} already exists") from None
                raise
            await self._saver.acopy_thread(session_id, copy.session_id)
        return copy

    async def snapshot(self, owner: str, session_id: str, checkpoint_id: str = "") -> StateSnapshot | None:
        """The session's StateSnapshot (at a checkpoint, if given); None while it has no graph."""
        session = await self._store.get_session(owner, session_id)
        if not session.graph_id:
            return None
        configurable = {"thread_id": session_id}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
        snapshot = await self._registry.get(session.graph_id).graph.aget_state({"configurable": configurable})
        if checkpoint_id and snapshot.created_at is None:
            raise NotFound(f"checkpoint {checkpoint_id!r} not found in session {session_id!r}")
        return snapshot

    async def snapshots(
        self,
        owner: str,
        session_id: str,
        limit: int,
        before_checkpoint_id: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> list[StateSnapshot]:
        """The session's checkpoints as StateSnapshots, newest first."""
        session = await self._store.get_session(owner, session_id)
        if not session.graph_id:
            return []
        graph = self._registry.get(session.graph_id).graph
        before: RunnableConfig | None = None
        if before_checkpoint_id:
            before = {"configurable": {"thread_id": session_id, "checkpoint_id": before_checkpoint_id}}
        history = graph.aget_state_history(
            {"configurable": {"thread_id": session_id}}, before=before, limit=limit, filter=metadata
        )
        return [snapshot async for snapshot in history]

    async def run_snapshots(self, owner: str, run_id: str) -> list[StateSnapshot]:
        """The checkpoints a run wrote in its session's root graph, oldest first."""
        run = await self._store.get_run(owner, run_id)
        graph = self._registry.get(run.graph_id).graph
        history = graph.aget_state_history(
            {"configurable": {"thread_id": run.session_id}}, filter={"run_id": run_id}
        )
        return [snapshot async for snapshot in history][::-1]
