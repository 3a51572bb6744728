"""Thin gRPC servicers for graphs, sessions and runs: proto ⇄ core, errors ⇄ status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from stepstream.security.interceptor import current_principal
from stepstream.server.api import convert
from stepstream.server.api.session_stream import SessionStreamHandler
from stepstream.server.api.status import replica_trailer, streaming, unary
from stepstream.server.core.app import Core
from stepstream.server.core.assistants import default_assistant_id
from stepstream.server.core.errors import InvalidArgument
from stepstream.server.core.jsonio import parse_field
from stepstream.v1 import (
    graphs_pb2,
    graphs_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def owner_of(core: Core, context: Context) -> str:
    """The tenant a request acts for (the auth interceptor resolved it); one owner while
    authentication is off."""
    principal = current_principal.get()
    return principal.owner if principal is not None else core.settings.default_owner


class _Servicer:
    """What every servicer here holds: the core, and the trailer its calls end with (status.py)."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self.trailer = replica_trailer(core.settings.replica)


class GraphServicer(_Servicer, graphs_pb2_grpc.GraphServiceServicer):
    def _graph_pb(self, graph_id: str) -> graphs_pb2.Graph:
        loaded = self._core.graph(graph_id)
        schemas = loaded.schemas()
        return graphs_pb2.Graph(
            graph_id=graph_id,
            description=loaded.spec.description,
            input_schema_json=schemas["input"],
            output_schema_json=schemas["output"],
            state_schema_json=schemas["state"],
            nodes=loaded.nodes,
            default_max_concurrency=loaded.spec.max_concurrency,
            context_schema_json=self._core.context_schema(graph_id),
            default_assistant_id=default_assistant_id(graph_id),
        )

    @unary
    async def ListGraphs(self, request: graphs_pb2.ListGraphsRequest, context: Context) -> Any:
        graphs = [self._graph_pb(g.spec.graph_id) for g in self._core.graphs()]
        return graphs_pb2.ListGraphsResponse(graphs=graphs)

    @unary
    async def GetGraph(self, request: graphs_pb2.GetGraphRequest, context: Context) -> Any:
        return graphs_pb2.GetGraphResponse(graph=self._graph_pb(request.graph_id))


class SessionServicer(_Servicer, sessions_pb2_grpc.SessionServiceServicer):
    @unary
    async def CreateSession(self, request: sessions_pb2.CreateSessionRequest, context: Context) -> Any:
        metadata = parse_field("metadata_json", request.metadata_json, object_only=True)
        session = await self._core.create_session(
            owner_of(self._core, context), request.graph_id, session_id=request.session_id, metadata=metadata
        )
        return sessions_pb2.CreateSessionResponse(session=convert.session_pb(session))

    @unary
    async def GetSession(self, request: sessions_pb2.GetSessionRequest, context: Context) -> Any:
        session = await self._core.get_session(owner_of(self._core, context), request.session_id)
        return sessions_pb2.GetSessionResponse(session=convert.session_pb(session))

    @unary
    async def ListSessions(self, request: sessions_pb2.ListSessionsRequest, context: Context) -> Any:
        items, token = await self._core.list_sessions(
            owner_of(self._core, context),
            convert.session_query(request),
            request.page_size,
            request.page_token,
        )
        return sessions_pb2.ListSessionsResponse(
            sessions=[convert.session_pb(s) for s in items], next_page_token=token
        )

    @unary
    async def DeleteSession(self, request: sessions_pb2.DeleteSessionRequest, context: Context) -> Any:
        await self._core.delete_session(owner_of(self._core, context), request.session_id, request.force)
        return sessions_pb2.DeleteSessionResponse()

    @unary
    async def GetSessionState(self, request: sessions_pb2.GetSessionStateRequest, context: Context) -> Any:
        state = await self._core.session_state(
            owner_of(self._core, context), request.session_id, request.checkpoint_id
        )
        return sessions_pb2.GetSessionStateResponse(state=convert.state_pb(state))

    @unary
    async def GetSessionHistory(
        self, request: sessions_pb2.GetSessionHistoryRequest, context: Context
    ) -> Any:
        states, token = await self._core.session_history(
            owner_of(self._core, context), request.session_id, request.page_size, request.page_token
        )
        return sessions_pb2.GetSessionHistoryResponse(
            states=[convert.state_pb(s) for s in states], next_page_token=token
        )

    @unary
    async def UpdateSessionState(
        self, request: sessions_pb2.UpdateSessionStateRequest, context: Context
    ) -> Any:
        return await update_state(self._core, owner_of(self._core, context), request)

    @unary
    async def PatchSession(self, request: sessions_pb2.PatchSessionRequest, context: Context) -> Any:
        metadata = parse_field("metadata_json", request.metadata_json, object_only=True)
        if metadata is None:
            raise InvalidArgument("metadata_json", "is required: a JSON object of keys to set (null removes)")
        session = await self._core.patch_session(owner_of(self._core, context), request.session_id, metadata)
        return sessions_pb2.PatchSessionResponse(session=convert.session_pb(session))

    @unary
    async def CopySession(self, request: sessions_pb2.CopySessionRequest, context: Context) -> Any:
        session = await self._core.copy_session(
            owner_of(self._core, context), request.session_id, request.new_session_id
        )
        return sessions_pb2.CopySessionResponse(session=convert.session_pb(session))

    async def SessionStream(self, request_iterator: Any, context: Context) -> AsyncIterator[Any]:
        context.set_trailing_metadata(self.trailer)
        handler = SessionStreamHandler(self._core, owner_of(self._core, context))
        async for response in handler.serve(request_iterator):
            yield response


async def update_state(core: Core, owner: str, request: sessions_pb2.UpdateSessionStateRequest) -> Any:
    values = parse_field("values_json", request.values_json)
    checkpoint_id = await core.update_session_state(
        owner, request.session_id, values, request.as_node, request.checkpoint_id
    )
    return sessions_pb2.UpdateSessionStateResponse(checkpoint_id=checkpoint_id)


class RunServicer(_Servicer, runs_pb2_grpc.RunServiceServicer):
    async def _start(self, request: runs_pb2.StartRunRequest, context: Context) -> Any:
        return await self._core.start_run(convert.start_run_request(owner_of(self._core, context), request))

    @unary
    async def StartRun(self, request: runs_pb2.StartRunRequest, context: Context) -> Any:
        run = await self._start(request, context)
        return runs_pb2.StartRunResponse(run=convert.run_pb(run))

    @streaming
    async def StreamRun(self, request: runs_pb2.StreamRunRequest, context: Context) -> AsyncIterator[Any]:
        event_filter = convert.event_filter(request.event_kinds, request.subgraphs)
        run = await self._start(request.run, context)
        ended = False
        try:
            async for batch in self._core.run_events(run, 0, event_filter):
                ended = ended or any(e.terminal for e in batch)
                yield runs_pb2.StreamRunResponse(events=[convert.event_pb(e) for e in batch])
        finally:
            if request.cancel_on_disconnect and not ended:
                self._core.run_abandoned(run.owner, run.run_id)

    @streaming
    async def JoinRun(self, request: runs_pb2.JoinRunRequest, context: Context) -> AsyncIterator[Any]:
        event_filter = convert.event_filter(request.event_kinds, request.subgraphs)
        owner = owner_of(self._core, context)
        async for batch in self._core.join_run(owner, request.run_id, request.after_seq, event_filter):
            yield runs_pb2.JoinRunResponse(events=[convert.event_pb(e) for e in batch])

    @unary
    async def GetRun(self, request: runs_pb2.GetRunRequest, context: Context) -> Any:
        run = await self._core.get_run(owner_of(self._core, context), request.run_id)
        return runs_pb2.GetRunResponse(run=convert.run_pb(run))

    @unary
    async def ListRuns(self, request: runs_pb2.ListRunsRequest, context: Context) -> Any:
        unknown = [s for s in request.statuses if s not in convert.RUN_STATUS_NAME]
        if unknown:
            raise InvalidArgument("statuses", f"unknown run status {unknown[0]}")
        statuses = [convert.RUN_STATUS_NAME[s] for s in request.statuses]
        items, token = await self._core.list_runs(
            owner_of(self._core, context), request.session_id, statuses, request.page_size, request.page_token
        )
        return runs_pb2.ListRunsResponse(runs=[convert.run_pb(r) for r in items], next_page_token=token)

    @unary
    async def CancelRun(self, request: runs_pb2.CancelRunRequest, context: Context) -> Any:
        run = await self._core.cancel_run(owner_of(self._core, context), request.run_id, request.rollback)
        return runs_pb2.CancelRunResponse(run=convert.run_pb(run))

    @unary
    async def WaitRun(self, request: runs_pb2.WaitRunRequest, context: Context) -> Any:
        timeout = request.timeout_seconds or context.time_remaining()
        run = await self._core.wait_run(owner_of(self._core, context), request.run_id, timeout)
        return runs_pb2.WaitRunResponse(run=convert.run_pb(run))
