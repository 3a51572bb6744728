"""A client that disconnects mid-stream: the run goes on, and the client rejoins from its cursor
and misses nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import grpc
import pytest

from stepstream.v1 import runs_pb2, runs_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from tests.rpc import Api
from tests.tally import settle

pytestmark = pytest.mark.process

RUNS = 8


def _read_some_then_drop(address: str, call: str, count: int) -> tuple[str, int, str]:
    """Start a slow run over a stream, read `count` events, then cut the connection.

    Returns the run id, the last seq read, and the session id (session streams)."""
    channel = grpc.insecure_channel(address)
    stub_runs = runs_pb2_grpc.RunServiceStub(channel)
    stub_sessions = sessions_pb2_grpc.SessionServiceStub(channel)
    inp = json.dumps({"steps": 12, "delay": 0.1})
    seen: list[tuple[str, int]] = []
    session_id = ""
    if call == "StreamRun":
        stream = stub_runs.StreamRun(
            runs_pb2.StreamRunRequest(run=runs_pb2.StartRunRequest(graph_id="slow", input_json=inp))
        )
        for reply in stream:
            seen += [(e.run_id, e.seq) for e in reply.events]
            if len(seen) >= count:
                break
    else:
        requests = iter(
            [
                sessions_pb2.SessionStreamRequest(
                    request_id="o", open=sessions_pb2.OpenSession(graph_id="slow")
                ),
                sessions_pb2.SessionStreamRequest(
                    request_id="s", start_run=sessions_pb2.StartRun(input_json=inp)
                ),
            ]
        )
        stream = stub_sessions.SessionStream(_then_hold(requests))
        for reply in stream:
            if reply.HasField("session"):
                session_id = reply.session.session_id
            if reply.HasField("event"):
                seen.append((reply.event.run_id, reply.event.seq))
                if len(seen) >= count:
                    break
    stream.cancel()
    channel.close()
    run_id, last = seen[-1]
    assert [s for _, s in seen] == list(range(1, len(seen) + 1))
    return run_id, last, session_id


def _then_hold(
    requests: Iterator[sessions_pb2.SessionStreamRequest],
) -> Iterator[sessions_pb2.SessionStreamRequest]:
    yield from requests
    threading.Event().wait(30)  # keep the stream open until the client cuts it


def test_runs_go_on_after_their_streams_are_cut_and_rejoining_misses_nothing(server_address: str) -> None:
    dropped = [_read_some_then_drop(server_address, "StreamRun", 3) for _ in range(RUNS // 2)]
    dropped += [_read_some_then_drop(server_address, "SessionStream", 3) for _ in range(RUNS // 2)]
    api = Api(server_address)
    try:
        # Rejoin while the runs are still going: from the last seq each client saw.
        for run_id, last, session_id in dropped:
            if session_id:
                request = sessions_pb2.SessionStreamRequest(
                    request_id="r",
                    open=sessions_pb2.OpenSession(
                        session_id=session_id, resume_run_id=run_id, after_seq=last
                    ),
                )
                replies = list(api.sessions.SessionStream(iter([request]), timeout=60))
                seqs = [r.event.seq for r in replies if r.HasField("event")]
                kinds = [r.event.WhichOneof("kind") for r in replies if r.HasField("event")]
            else:
                events = api.join(run_id, after_seq=last)
                seqs = [e.seq for e in events]
                kinds = [str(e.WhichOneof("kind")) for e in events]
            assert seqs == list(range(last + 1, last + 1 + len(seqs))), (run_id, last, seqs[:5])
            assert kinds[-1] == "run_finished"
        tally = settle(api, [run_id for run_id, _, _ in dropped])
        print(tally)
        assert tally.lost == [] and tally.by_status == {"RUN_STATUS_SUCCEEDED": RUNS}, tally
        for run_id, _, _ in dropped:
            assert len(json.loads(api.get_run(run_id).values_json)["done"]) == 12
    finally:
        api.close()
