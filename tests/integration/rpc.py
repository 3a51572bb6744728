"""Small helpers over the generated stubs for the integration tests."""

from __future__ import annotations

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
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
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


def kinds(events: Iterable[events_pb2.RunEvent]) -> list[str]:
    return [str(e.WhichOneof("kind")) for e in events]


def resume(value: Any) -> common_pb2.Command:
    return common_pb2.Command(resume_json=json.dumps(value))
