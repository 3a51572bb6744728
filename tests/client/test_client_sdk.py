"""The Python SDK and the CLI's client verbs against a real `stepstream serve` process.

`server_address` (tests/conftest.py) serves tests/graphs: `linear` (a -> b -> c,
each adding 1 to x), `ask` (interrupt("question?"), then {"answer": resume}),
`slow` (a tick per `delay` seconds, `steps` times), `boom` (a node raising).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest

from stepstream.client import (
    AlreadyExistsError,
    BusyPolicy,
    Command,
    FailedPreconditionError,
    InterruptRaised,
    InvalidArgumentError,
    NotFoundError,
    RunCancelled,
    RunEvent,
    RunFinished,
    RunOptions,
    RunStatus,
    SessionStatus,
    StepstreamClient,
    SuperstepStarted,
    TaskFinished,
    UnavailableError,
)
from tests.proxy import CuttableProxy

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.fixture
async def client(server_address: str) -> AsyncIterator[StepstreamClient]:
    async with StepstreamClient(server_address, timeout=30) as c:
        yield c


async def collect(events: AsyncIterator[RunEvent]) -> list[RunEvent]:
    return [e async for e in events]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- graphs --------------------------------------------------------------------


async def test_graphs_list_and_get(client: StepstreamClient) -> None:
    graphs = {g.graph_id: g for g in await client.graphs.list()}
    assert {"linear", "ask"} <= set(graphs)
    linear = await client.graphs.get("linear")
    assert linear.nodes == ("a", "b", "c")
    assert linear == graphs["linear"]
    with pytest.raises(NotFoundError):
        await client.graphs.get("no-such-graph")


# -- runs ----------------------------------------------------------------------


async def test_stream_decodes_every_event_of_a_linear_run(client: StepstreamClient) -> None:
    events = [e async for e in client.runs.stream("linear", {"x": 1})]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "run_queued" and events[-1].kind == "run_finished"
    steps = [e.data for e in events if isinstance(e.data, SuperstepStarted)]
    assert [[t.node for t in s.tasks] for s in steps] == [["a"], ["b"], ["c"]]
    updates = [e.data.update for e in events if isinstance(e.data, TaskFinished)]
    assert updates == [{"x": 2, "log": ["a"]}, {"x": 3, "log": ["b"]}, {"x": 4, "log": ["c"]}]
    final = events[-1].data
    assert isinstance(final, RunFinished) and final.values == {"x": 4, "log": ["a", "b", "c"]}
    run = await client.runs.get(events[0].run_id)
    assert run.status is RunStatus.SUCCEEDED and run.last_seq == events[-1].seq
    assert run.values == final.values and run.ended_at is not None


async def test_start_wait_and_join_from_a_cursor(client: StepstreamClient) -> None:
    run = await client.runs.start("linear", {"x": 10})
    assert run.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    done = await client.runs.wait(run.run_id, timeout=30)
    assert done.status is RunStatus.SUCCEEDED and done.values["x"] == 13
    everything = [e async for e in client.runs.join(run.run_id)]
    rest = [e async for e in client.runs.join(run.run_id, after_seq=3)]
    assert rest == [e for e in everything if e.seq > 3]
    # Joining an ended run after its last event ends at once (the contract: "or at once, for an ended run").
    assert (
        await asyncio.wait_for(collect(client.runs.join(run.run_id, after_seq=everything[-1].seq)), 10) == []
    )


async def test_event_kind_selection(client: StepstreamClient) -> None:
    events = [e async for e in client.runs.stream("linear", {"x": 0}, kinds=["supersteps"])]
    assert {e.kind for e in events} == {
        "run_queued",
        "run_started",
        "superstep_started",
        "superstep_finished",
        "run_finished",
    }


async def test_interrupt_then_resume_on_the_same_session(client: StepstreamClient) -> None:
    events = [e async for e in client.runs.stream("ask", {})]
    raised = [e.data for e in events if isinstance(e.data, InterruptRaised)]
    assert raised and raised[0].interrupts[0].value == "question?"
    final = events[-1].data
    assert isinstance(final, RunFinished) and [i.value for i in final.interrupts] == ["question?"]
    run = await client.runs.get(events[0].run_id)
    assert run.status is RunStatus.INTERRUPTED
    session = await client.sessions.get(run.session_id)
    assert session.status is SessionStatus.INTERRUPTED
    state = await client.sessions.state(run.session_id)
    assert [i.value for i in state.interrupts] == ["question?"]

    resumed = [
        e async for e in client.runs.stream(session_id=run.session_id, command=Command(resume={"n": 42}))
    ]
    end = resumed[-1].data
    assert isinstance(end, RunFinished) and end.interrupts == ()
    assert end.values["answer"] == {"n": 42}
    with pytest.raises(FailedPreconditionError):
        await client.runs.start(session_id=run.session_id, command=Command(resume="again"))


async def test_failed_run_and_errors_of_bad_calls(client: StepstreamClient) -> None:
    run = await client.runs.start("boom", {})
    ended = await client.runs.wait(run.run_id, timeout=30)
    assert ended.status is RunStatus.FAILED and ended.error_type == "ValueError"
    with pytest.raises(NotFoundError):
        await client.runs.get("no-such-run")
    with pytest.raises(NotFoundError):
        [e async for e in client.runs.join("no-such-run")]
    with pytest.raises(InvalidArgumentError) as bad:
        await client.runs.start("linear", {"x": 1}, options=RunOptions(interrupt_before=["nope"]))
    assert bad.value.field_violations and "interrupt_before" in bad.value.field_violations[0].field


async def test_busy_session_reject_then_cancel(client: StepstreamClient) -> None:
    first = await client.runs.start("slow", {"steps": 50, "delay": 0.1})
    with pytest.raises(FailedPreconditionError):
        await client.runs.start(
            "slow",
            {"steps": 1},
            session_id=first.session_id,
            options=RunOptions(busy_policy=BusyPolicy.REJECT),
        )
    queued = await client.runs.start(
        "slow",
        {"steps": 1, "delay": 0},
        session_id=first.session_id,
        options=RunOptions(busy_policy="enqueue"),
    )
    cancelled = await client.runs.cancel(first.run_id)
    assert cancelled.run_id == first.run_id
    ended = await client.runs.wait(first.run_id, timeout=30)
    assert ended.status is RunStatus.CANCELLED
    last = [e async for e in client.runs.join(first.run_id)][-1]
    assert isinstance(last.data, RunCancelled)
    assert (await client.runs.wait(queued.run_id, timeout=30)).status is RunStatus.SUCCEEDED
    listed = [r.run_id async for r in client.runs.list(session_id=first.session_id)]
    assert listed == [queued.run_id, first.run_id]  # newest first
    only = [
        r.run_id async for r in client.runs.list(session_id=first.session_id, statuses=[RunStatus.CANCELLED])
    ]
    assert only == [first.run_id]


# -- sessions ------------------------------------------------------------------


async def test_session_lifecycle_paging_history_and_update(client: StepstreamClient) -> None:
    tag = unique("t")
    ids = [unique("sess") for _ in range(3)]
    for session_id in ids:
        created = await client.sessions.create("linear", session_id=session_id, metadata={"tag": tag})
        assert created.session_id == session_id and created.metadata == {"tag": tag}
    with pytest.raises(AlreadyExistsError):
        await client.sessions.create("linear", session_id=ids[0])
    with pytest.raises(InvalidArgumentError) as bad:
        await client.sessions.create("linear", session_id="bad id with spaces")
    assert bad.value.field_violations[0].field == "session_id"

    listed = [s.session_id async for s in client.sessions.list(graph_id="linear", page_size=1)]
    assert [i for i in listed if i in ids] == ids[::-1]  # newest first, across pages of one
    pages = [p async for p in client.sessions.pages(graph_id="linear", page_size=2)]
    assert all(len(p.items) <= 2 for p in pages) and pages[-1].last
    assert len([s async for s in client.sessions.list(graph_id="linear", limit=2)]) == 2

    session_id = ids[0]
    await client.runs.wait(
        (await client.runs.start(session_id=session_id, input={"x": 1})).run_id, timeout=30
    )
    state = await client.sessions.state(session_id)
    assert state.values["x"] == 4 and state.next == ()
    history = [h async for h in client.sessions.history(session_id)]
    assert history[0].checkpoint_id == state.checkpoint_id and len(history) >= 4
    checkpoint = await client.sessions.update_state(session_id, {"x": 100}, as_node="c")
    assert (await client.sessions.state(session_id)).values["x"] == 100
    assert (await client.sessions.state(session_id)).checkpoint_id == checkpoint
    past = await client.sessions.state(session_id, checkpoint_id=state.checkpoint_id)
    assert past.values["x"] == 4

    await client.sessions.delete(session_id)
    with pytest.raises(NotFoundError):
        await client.sessions.get(session_id)


# -- the bidirectional session stream ------------------------------------------


async def test_session_stream_start_interrupt_resume(client: StepstreamClient) -> None:
    async with client.session_stream(graph_id="ask", metadata={"via": "stream"}) as stream:
        assert stream.session is not None and stream.session.graph_id == "ask"
        with pytest.raises(FailedPreconditionError):
            await stream.resume("nothing is pending")
        run = await stream.start_run({"question": "favourite colour?"})
        events = [e async for e in stream.events(run.run_id)]
        end = events[-1].data
        assert isinstance(end, RunFinished)
        assert end.interrupts and end.interrupts[0].value == "favourite colour?"
        again = await stream.resume("blue")  # the refusal above left the stream open
        resumed = [e async for e in stream.events(again.run_id)]
        final = resumed[-1].data
        assert isinstance(final, RunFinished) and final.values["answer"] == "blue"
        checkpoint = await stream.update_state({"answer": "green"})
        assert checkpoint
        session_id = stream.session.session_id
    assert (await client.sessions.state(session_id)).values["answer"] == "green"


async def test_session_stream_on_an_existing_session_and_cancel(client: StepstreamClient) -> None:
    session = await client.sessions.create("slow")
    async with client.session_stream(session_id=session.session_id, kinds=["supersteps"]) as stream:
        run = await stream.start_run({"steps": 100, "delay": 0.05})
        seen: list[RunEvent] = []
        async for event in stream.events(run.run_id):
            seen.append(event)
            if event.kind == "superstep_finished":
                cancelled = await stream.cancel()
                assert cancelled.run_id == run.run_id
        assert isinstance(seen[-1].data, RunCancelled)
        assert {e.kind for e in seen} <= {
            "run_queued",
            "run_started",
            "superstep_started",
            "superstep_finished",
            "run_cancelled",
        }


# -- transport: failover and transparent reconnection ----------------------------


async def test_join_reconnects_transparently_after_a_cut(server_address: str) -> None:
    proxy = CuttableProxy(server_address)
    await proxy.start()
    try:
        async with StepstreamClient(proxy.address) as client:
            run = await client.runs.start("slow", {"steps": 6, "delay": 0.15})
            seqs: list[int] = []
            cuts = 0
            async for event in client.runs.join(run.run_id):
                seqs.append(event.seq)
                if event.kind == "superstep_finished" and cuts < 2:
                    proxy.cut()  # the stream breaks; join must resume after this seq
                    cuts += 1
            assert cuts == 2
            assert seqs == list(range(1, seqs[-1] + 1))  # nothing lost, nothing twice
            finished = await client.runs.get(run.run_id)
            assert finished.status is RunStatus.SUCCEEDED and finished.last_seq == seqs[-1]
    finally:
        await proxy.stop()


async def test_stream_survives_a_cut_without_starting_the_run_twice(server_address: str) -> None:
    proxy = CuttableProxy(server_address)
    await proxy.start()
    try:
        async with StepstreamClient(proxy.address) as client:
            events: list[RunEvent] = []
            async for event in client.runs.stream("slow", {"steps": 4, "delay": 0.15}):
                events.append(event)
                if event.kind == "superstep_finished" and len(events) < 8:
                    proxy.cut()
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert isinstance(events[-1].data, RunFinished)
            runs = [r async for r in client.runs.list(session_id=events[0].data.session_id)]  # type: ignore[union-attr]
            assert len(runs) == 1
    finally:
        await proxy.stop()


async def test_calls_fail_over_past_a_dead_address(server_address: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    async with StepstreamClient([dead, server_address], reconnect_timeout=5) as client:
        for _ in range(4):
            assert "linear" in {g.graph_id for g in await client.graphs.list()}
        run = await client.runs.start("linear", {"x": 0})  # a write the dead address never received
        assert [e async for e in client.runs.join(run.run_id)][-1].kind == "run_finished"
    async with StepstreamClient(dead, reconnect_timeout=0.5) as client:
        with pytest.raises(UnavailableError):
            await client.graphs.list()


# -- the CLI ---------------------------------------------------------------------


def cli(server_address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPSTREAM_ADDRESS": server_address, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "stepstream.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def test_cli_graphs_and_run(server_address: str) -> None:
    graphs = cli(server_address, "graphs")
    assert graphs.returncode == 0, graphs.stderr
    assert any(line.split("\t")[:2] == ["linear", "a, b, c"] for line in graphs.stdout.splitlines())
    done = cli(server_address, "run", "linear", "--input", '{"x": 1}')
    assert done.returncode == 0, done.stderr
    assert "superstep 3: c" in done.stdout and '"x": 4' in done.stdout
    assert "succeeded: 3 supersteps, 3 tasks" in done.stderr


def test_cli_interrupt_without_a_terminal_says_how_to_resume(server_address: str) -> None:
    asked = cli(server_address, "run", "ask", "--input", "{}")
    assert asked.returncode == 3, asked.stderr
    assert "? question?" in asked.stderr
    session_id = asked.stderr.split("--session ")[1].split()[0]
    answered = cli(server_address, "run", "ask", "--session", session_id, "--resume", '"yes"')
    assert answered.returncode == 0, answered.stderr
    assert '"answer": "yes"' in answered.stdout
    shown = cli(server_address, "sessions", "show", session_id)
    assert shown.returncode == 0 and "succeeded" in shown.stdout
    listed = cli(server_address, "sessions", "list", "--graph", "ask")
    assert session_id in listed.stdout
    deleted = cli(server_address, "sessions", "delete", session_id)
    assert deleted.returncode == 0 and session_id in deleted.stdout
    gone = cli(server_address, "sessions", "show", session_id)
    assert gone.returncode == 1 and gone.stderr.startswith("error: NOT_FOUND:")
    assert len(gone.stderr.strip().splitlines()) == 1


def test_cli_join_and_failures(server_address: str) -> None:
    started = cli(server_address, "run", "linear", "--input", '{"x": 5}', "--no-follow")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[1]
    joined = cli(server_address, "join", run_id, "--after-seq", "2")
    assert joined.returncode == 0, joined.stderr
    assert '"x": 8' in joined.stdout and "    1  " not in joined.stdout
    failed = cli(server_address, "run", "boom", "--input", "{}")
    assert failed.returncode == 1 and "ValueError: boom" in failed.stderr
    unknown = cli(server_address, "join", "no-such-run")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: NOT_FOUND:")
    bad_json = cli(server_address, "run", "linear", "--input", "{x")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    refused = cli("127.0.0.1:1", "graphs")
    assert refused.returncode == 1 and refused.stderr.startswith("error: UNAVAILABLE:")


async def test_session_stream_reopens_after_a_cut_and_misses_nothing(server_address: str) -> None:
    proxy = CuttableProxy(server_address)
    await proxy.start()
    try:
        async with (
            StepstreamClient(proxy.address) as client,
            client.session_stream(graph_id="slow") as stream,
        ):
            run = await stream.start_run({"steps": 5, "delay": 0.15})
            seqs: list[int] = []
            cuts = 0
            async for event in stream.events(run.run_id):
                seqs.append(event.seq)
                if event.kind == "superstep_finished" and cuts < 2:
                    proxy.cut()  # the connection breaks mid-run, twice
                    cuts += 1
            assert cuts == 2
            assert seqs == list(range(1, seqs[-1] + 1))  # nothing lost, nothing twice
            # The reopened stream still takes actions.
            again = await stream.start_run({"steps": 1, "delay": 0})
            last = [e async for e in stream.events(again.run_id)][-1]
            assert isinstance(last.data, RunFinished)
    finally:
        await proxy.stop()
