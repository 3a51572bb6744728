"""Round-robin, failover and transparent reconnection, against in-process fake servers."""

from __future__ import annotations

from typing import Any

import pytest

from stepstream.client import (
    CallCancelledError,
    FailedPreconditionError,
    NotFoundError,
    RunFinished,
    StepstreamClient,
    UnavailableError,
)
from stepstream.client.pool import Lease
from stepstream.v1 import runs_pb2

pytestmark = pytest.mark.timeout(30)


async def test_join_reconnects_with_last_seen_seq(make_server: Any) -> None:
    server = await make_server()
    server.runs.break_after = 3
    async with StepstreamClient(server.address) as client:
        events = [e async for e in client.runs.join("r1")]
    assert [e.seq for e in events] == list(range(1, 10))
    assert server.runs.joins == [0, 3]
    assert isinstance(events[-1].data, RunFinished) and events[-1].data.values == {"x": 3}


async def test_join_from_a_cursor_and_drops_resent_events(make_server: Any) -> None:
    server = await make_server()
    server.runs.ignore_cursor = True
    async with StepstreamClient(server.address) as client:
        seqs = [e.seq async for e in client.runs.join("r1", after_seq=5)]
    assert seqs == [6, 7, 8, 9]


async def test_join_fails_over_to_another_replica(make_server: Any) -> None:
    a = await make_server()
    b = await make_server(a.runs.events)
    a.runs.break_after = 2
    b.runs.break_after = None
    async with StepstreamClient([a.address, b.address]) as client:
        seqs = [e.seq async for e in client.runs.join("r1")]
    assert seqs == list(range(1, 10))
    assert a.runs.joins == [0]
    assert b.runs.joins == [2]


async def test_join_rejoins_a_stream_that_ended_before_the_run(make_server: Any) -> None:
    server = await make_server()
    server.runs.end_after = 4
    server.runs.status = runs_pb2.RUN_STATUS_RUNNING
    async with StepstreamClient(server.address) as client:
        seqs = [e.seq async for e in client.runs.join("r1")]
    assert seqs == list(range(1, 10))
    assert server.runs.joins == [0, 4]


async def test_join_after_the_last_event_of_an_ended_run_is_empty(make_server: Any) -> None:
    server = await make_server()
    async with StepstreamClient(server.address) as client:
        assert [e async for e in client.runs.join("r1", after_seq=9)] == []
    assert server.runs.joins == [9]


async def test_join_gives_up_after_the_reconnect_timeout(dead_address: str) -> None:
    async with StepstreamClient(dead_address, reconnect_timeout=0.3) as client:
        with pytest.raises(UnavailableError):
            [e async for e in client.runs.join("r1")]


async def test_stream_continues_through_join_when_broken(make_server: Any) -> None:
    server = await make_server()
    server.runs.break_after = 4
    async with StepstreamClient(server.address) as client:
        seqs = [e.seq async for e in client.runs.stream("linear", {"x": 0})]
    assert seqs == list(range(1, 10))
    assert server.runs.calls["StreamRun"] == 1  # the run is never started twice
    assert server.runs.joins == [4]


async def test_unary_calls_rotate_over_replicas(make_server: Any) -> None:
    a, b = await make_server(), await make_server()
    async with StepstreamClient([a.address, b.address]) as client:
        for _ in range(4):
            assert (await client.runs.get("r1")).run_id == "r1"
    assert a.runs.calls["GetRun"] == 2 and b.runs.calls["GetRun"] == 2


async def test_several_connections_per_address_rotate_and_fail_over_as_one_address(
    make_server: Any, dead_address: str
) -> None:
    a, b = await make_server(), await make_server()
    async with StepstreamClient([a.address, b.address], connections=3) as client:
        assert client.addresses == (a.address, b.address)
        for _ in range(6):
            assert (await client.runs.get("r1")).run_id == "r1"
    assert a.runs.calls["GetRun"] == 3 and b.runs.calls["GetRun"] == 3
    async with StepstreamClient([dead_address, b.address], connections=3) as client:
        # A dead address is tried once per call, not once per connection, then set aside.
        for _ in range(4):
            assert (await client.runs.get("r1")).run_id == "r1"
    assert b.runs.calls["GetRun"] == 3 + 4
    with pytest.raises(ValueError, match="connections"):
        StepstreamClient(a.address, connections=0)


async def test_a_call_goes_to_the_connection_with_the_fewest_calls_in_flight(make_server: Any) -> None:
    a, b = await make_server(), await make_server()
    async with StepstreamClient([a.address, b.address], connections=3) as client:
        pool = client._pool
        busy_a = [Lease(e) for e in [e for e in pool.endpoints if e.address == a.address][:2]]
        # Of a's three connections the idle one; b, with nothing in flight, first.
        first, second = pool.order()
        assert (first.address, first.in_flight) == (b.address, 0)
        assert second.address == a.address and second.in_flight == 0
        for lease in busy_a:
            lease.release()
            lease.release()  # a lease is released once, however often asked
        assert all(e.in_flight == 0 for e in pool.endpoints)
        # Unary calls, run streams (broken and rejoined) and session streams give their hold back.
        a.runs.break_after = 4
        await client.runs.get("r1")
        [e async for e in client.runs.stream("linear", {"x": 0})]
        async with client.session_stream(graph_id="linear") as session:
            assert sum(e.in_flight for e in pool.endpoints) == 1
            assert session.session is not None
        assert all(e.in_flight == 0 for e in pool.endpoints)


async def test_connections_that_reached_one_replica_share_its_count_of_calls(make_server: Any) -> None:
    a = await make_server()
    async with StepstreamClient(a.address, connections=4) as client:
        pool = client._pool
        w1, w1_idle, w1_too, w2 = pool.endpoints
        # Not known yet: each connection counts alone, so an idle one of w1 could be chosen.
        busy = [Lease(w1), Lease(w1), Lease(w2)]
        assert {pool.order()[0].in_flight for _ in range(8)} == {0}
        for endpoint, replica in ((w1, "w1"), (w1_idle, "w1"), (w1_too, "w1"), (w2, "w2")):
            endpoint.replica = replica
        # Known: w1 holds 2 calls and w2 one, so w2's connection gets the next, busy as it is.
        assert [pool.order()[0] for _ in range(8)] == [w2] * 8
        busy += [Lease(w2), Lease(w2)]
        # w2 holds 3 now: the next goes to w1, on its connections with the fewest.
        assert {id(pool.order()[0]) for _ in range(8)} == {id(w1_idle), id(w1_too)}
        for lease in busy:
            lease.release()


async def test_reads_fail_over_past_a_dead_replica(make_server: Any, dead_address: str) -> None:
    server = await make_server()
    async with StepstreamClient([dead_address, server.address]) as client:
        for _ in range(3):
            assert (await client.runs.get("r1")).run_id == "r1"
        # Writes too, when the dead replica never received them.
        assert (await client.runs.start("linear", {"x": 1})).run_id == "r1"


async def test_write_that_reached_a_server_is_not_repeated(make_server: Any) -> None:
    a, b = await make_server(), await make_server()
    a.runs.break_after = b.runs.break_after = 0  # both answer StartRun with UNAVAILABLE
    async with StepstreamClient([a.address, b.address]) as client:
        with pytest.raises(UnavailableError, match="draining"):
            await client.runs.start("linear", {"x": 1})
    assert a.runs.calls.get("StartRun", 0) + b.runs.calls.get("StartRun", 0) == 1


async def test_status_errors_are_not_retried(make_server: Any) -> None:
    a, b = await make_server(), await make_server()
    async with StepstreamClient([a.address, b.address]) as client:
        with pytest.raises(NotFoundError, match="no run nope"):
            await client.runs.get("nope")
    assert a.runs.calls.get("GetRun", 0) + b.runs.calls.get("GetRun", 0) == 1


async def test_session_stream_actions_and_events(make_server: Any) -> None:
    server = await make_server()
    async with StepstreamClient(server.address) as client:
        async with client.session_stream(graph_id="ask") as stream:
            assert stream.session is not None and stream.session.session_id == "s1"
            with pytest.raises(FailedPreconditionError) as refused:
                await stream.resume("too early")
            assert refused.value.field_violations[0].field == "resume"
            run = await stream.start_run({"question": "q"})
            assert run.run_id == "r-start"
            kinds = [e.kind async for e in stream.events(run.run_id)]
            assert kinds[0] == "run_queued" and kinds[-1] == "run_finished"
            resumed = await stream.resume("yes")  # the stream stayed open after the refusal
            assert [e.run_id async for e in stream.events(resumed.run_id)][-1] == "r-resume"
            assert await stream.update_state({"answer": 1}) == "ck-s1"
            assert (await stream.cancel()).run_id == "r-start"
        with pytest.raises(CallCancelledError):
            await stream.start_run({})  # closed


async def test_session_stream_opens_past_a_dead_replica(make_server: Any, dead_address: str) -> None:
    server = await make_server()
    async with StepstreamClient([dead_address, server.address]) as client:
        for _ in range(2):  # whichever address the rotation starts from
            async with client.session_stream(graph_id="ask") as stream:
                assert stream.session is not None and stream.session.session_id == "s1"


async def test_session_stream_open_refused(make_server: Any) -> None:
    server = await make_server()
    async with StepstreamClient(server.address) as client:
        with pytest.raises(NotFoundError, match="missing"):
            async with client.session_stream(session_id="missing"):
                pass
        with pytest.raises(ValueError):
            client.session_stream()
