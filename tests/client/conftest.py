"""In-process fake stepstream servers, to test the SDK's transport without the real server.

The fakes speak the real contract over real gRPC on loopback ports, and can
be told to break a stream with UNAVAILABLE, as a replica that goes away does.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from stepstream.v1 import events_pb2, runs_pb2, runs_pb2_grpc, sessions_pb2, sessions_pb2_grpc


def run_events(run_id: str = "r1", steps: int = 3) -> list[events_pb2.RunEvent]:
    """A complete event log: queued, started, one superstep per step, finished."""
    kinds: list[dict[str, Any]] = [
        {"run_queued": events_pb2.RunQueued(session_id="s1", graph_id="linear")},
        {"run_started": events_pb2.RunStarted(session_id="s1", graph_id="linear", attempt=1)},
    ]
    for step in range(1, steps + 1):
        kinds.append({"superstep_started": events_pb2.SuperstepStarted(step=step)})
        kinds.append(
            {"superstep_finished": events_pb2.SuperstepFinished(step=step, checkpoint_id=f"c{step}")}
        )
    kinds.append({"run_finished": events_pb2.RunFinished(values_json='{"x": 3}')})
    return [events_pb2.RunEvent(run_id=run_id, seq=i, **k) for i, k in enumerate(kinds, start=1)]


class FakeRuns(runs_pb2_grpc.RunServiceServicer):  # type: ignore[misc]
    """A RunService over a fixed event log; `break_after` events, it fails with UNAVAILABLE."""

    def __init__(self, events: list[events_pb2.RunEvent]) -> None:
        self.events = events
        self.break_after: int | None = None
        self.end_after: int | None = None  # end the stream cleanly (status OK) this early, once
        self.status = runs_pb2.RUN_STATUS_SUCCEEDED
        self.ignore_cursor = False  # resend everything from seq 1, to test de-duplication
        self.joins: list[int] = []
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def _send(
        self, after_seq: int, context: Any, response: Callable[[list[events_pb2.RunEvent]], Any]
    ) -> AsyncIterator[Any]:
        pending = [e for e in self.events if self.ignore_cursor or e.seq > after_seq]
        for sent, event in enumerate(pending):
            if self.break_after is not None and sent >= self.break_after:
                self.break_after = None
                await context.abort(grpc.StatusCode.UNAVAILABLE, "replica going away")
            if self.end_after is not None and sent >= self.end_after:
                self.end_after = None
                return
            yield response([event])

    async def JoinRun(self, request: runs_pb2.JoinRunRequest, context: Any) -> AsyncIterator[Any]:
        self._count("JoinRun")
        self.joins.append(request.after_seq)
        async for response in self._send(
            request.after_seq, context, lambda e: runs_pb2.JoinRunResponse(events=e)
        ):
            yield response

    async def StreamRun(self, request: runs_pb2.StreamRunRequest, context: Any) -> AsyncIterator[Any]:
        self._count("StreamRun")
        async for response in self._send(0, context, lambda e: runs_pb2.StreamRunResponse(events=e)):
            yield response

    async def StartRun(self, request: runs_pb2.StartRunRequest, context: Any) -> runs_pb2.StartRunResponse:
        self._count("StartRun")
        if self.break_after is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        return runs_pb2.StartRunResponse(run=runs_pb2.Run(run_id="r1", graph_id=request.graph_id))

    async def GetRun(self, request: runs_pb2.GetRunRequest, context: Any) -> runs_pb2.GetRunResponse:
        self._count("GetRun")
        if request.run_id != "r1":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {request.run_id}")
        run = runs_pb2.Run(run_id="r1", status=self.status, last_seq=self.events[-1].seq)
        return runs_pb2.GetRunResponse(run=run)


class FakeSessions(sessions_pb2_grpc.SessionServiceServicer):  # type: ignore[misc]
    """A SessionStream that answers each action the way the contract describes."""

    def __init__(self) -> None:
        self.interrupted = False

    async def SessionStream(
        self, requests: Any, context: Any
    ) -> AsyncIterator[sessions_pb2.SessionStreamResponse]:
        async for req in requests:
            rid = req.request_id
            action = req.WhichOneof("action")
            if action == "open" and req.open.session_id == "missing":
                error = sessions_pb2.StreamError(
                    code=5, message="session 'missing' not found", field="open.session_id"
                )
                yield sessions_pb2.SessionStreamResponse(request_id=rid, error=error)
            elif action == "open":
                yield sessions_pb2.SessionStreamResponse(
                    request_id=rid, session=sessions_pb2.Session(session_id="s1", graph_id=req.open.graph_id)
                )
            elif action in ("start_run", "resume"):
                if action == "resume" and not self.interrupted:
                    error = sessions_pb2.StreamError(code=9, message="no pending interrupt", field="resume")
                    yield sessions_pb2.SessionStreamResponse(request_id=rid, error=error)
                    continue
                run_id = "r-start" if action == "start_run" else "r-resume"
                yield sessions_pb2.SessionStreamResponse(
                    request_id=rid, run=runs_pb2.Run(run_id=run_id, session_id="s1")
                )
                for event in run_events(run_id, steps=1):
                    yield sessions_pb2.SessionStreamResponse(request_id=rid, event=event)
                self.interrupted = action == "start_run"
            elif action == "update_state":
                yield sessions_pb2.SessionStreamResponse(
                    request_id=rid,
                    state_updated=sessions_pb2.UpdateSessionStateResponse(
                        checkpoint_id=f"ck-{req.update_state.session_id}"
                    ),
                )
            elif action == "cancel":
                yield sessions_pb2.SessionStreamResponse(
                    request_id=rid,
                    cancelled=runs_pb2.Run(run_id="r-start", status=runs_pb2.RUN_STATUS_CANCELLED),
                )


class FakeServer:
    def __init__(self, runs: FakeRuns, sessions: FakeSessions) -> None:
        self.runs = runs
        self.sessions = sessions
        self.server: Any = grpc.aio.server()
        runs_pb2_grpc.add_RunServiceServicer_to_server(runs, self.server)
        sessions_pb2_grpc.add_SessionServiceServicer_to_server(sessions, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Any]]:
    started: list[FakeServer] = []

    async def make(events: list[events_pb2.RunEvent] | None = None) -> FakeServer:
        fake = FakeServer(FakeRuns(events or run_events()), FakeSessions())
        await fake.server.start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        await fake.server.stop(None)


@pytest.fixture
def dead_address() -> str:
    """A loopback address nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
