"""Small helpers over the generated stubs for the tests that call a server."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from typing import Any

import grpc

from stepstream.v1 import (
    common_pb2,
    events_pb2,
    graphs_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)


class Api:
    def __init__(
        self,
        address: str,
        metadata: tuple[tuple[str, str], ...] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        channel = (
            grpc.insecure_channel(address)
            if credentials is None
            else grpc.secure_channel(address, credentials)
        )
        # Every call carries `metadata` (a tenant's credentials).
        self.channel = grpc.intercept_channel(channel, _Metadata(metadata)) if metadata else channel
        self.graphs = graphs_pb2_grpc.GraphServiceStub(self.channel)
        self.sessions = sessions_pb2_grpc.SessionServiceStub(self.channel)
        self.runs = runs_pb2_grpc.RunServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def start(
        self, graph_id: str = "", inp: Any = None, session_id: str = "", **options: Any
    ) -> runs_pb2.Run:
        request = runs_pb2.StartRunRequest(
            graph_id=graph_id,
            session_id=session_id,
            input_json=json.dumps(inp) if inp is not None else "",
            options=runs_pb2.RunOptions(**options),
        )
        return self.runs.StartRun(request).run

    def stream(
        self, graph_id: str = "", inp: Any = None, session_id: str = "", kinds: Iterable[int] = (), **kw: Any
    ) -> list[events_pb2.RunEvent]:
        subgraphs = kw.pop("subgraphs", False)
        command = kw.pop("command", None)
        request = runs_pb2.StreamRunRequest(
            run=runs_pb2.StartRunRequest(
                graph_id=graph_id,
                session_id=session_id,
                input_json=json.dumps(inp) if inp is not None else "",
                command=command,
                options=runs_pb2.RunOptions(**kw),
            ),
            event_kinds=list(kinds),
            subgraphs=subgraphs,
        )
        return [e for reply in self.runs.StreamRun(request) for e in reply.events]

    def join(
        self, run_id: str, after_seq: int = 0, kinds: Iterable[int] = (), subgraphs: bool = False
    ) -> list[Any]:
        request = runs_pb2.JoinRunRequest(
            run_id=run_id, after_seq=after_seq, event_kinds=list(kinds), subgraphs=subgraphs
        )
        return [e for reply in self.runs.JoinRun(request) for e in reply.events]

    def wait(self, run_id: str, timeout: float = 30) -> runs_pb2.Run:
        return self.runs.WaitRun(runs_pb2.WaitRunRequest(run_id=run_id, timeout_seconds=timeout)).run

    def get_run(self, run_id: str) -> runs_pb2.Run:
        return self.runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id)).run

    def state(self, session_id: str) -> sessions_pb2.SessionState:
        return self.sessions.GetSessionState(sessions_pb2.GetSessionStateRequest(session_id=session_id)).state

    def values(self, session_id: str) -> Any:
        return json.loads(self.state(session_id).values_json)


class _Metadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata to every call of a channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        return _CallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), *self._metadata],
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


def kinds(events: Iterable[events_pb2.RunEvent]) -> list[str]:
    return [str(e.WhichOneof("kind")) for e in events]


def resume(value: Any) -> common_pb2.Command:
    return common_pb2.Command(resume_json=json.dumps(value))
