"""The Go, TypeScript and Java clients against a live `stepstream serve`.

Every language's example program lists the graphs, runs the research assistant
and follows its events, then holds a bidirectional session that answers the
clarification interrupt; what it prints is checked against what the server
stored. Its `assistant` mode creates an assistant and runs it (and the graph's
default) with a per-run context the graph's nodes read. Its `join` mode
follows a run through a proxy that cuts the connection mid-run, so the
helper's reconnect-from-after_seq is exercised for real.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import grpc
import pytest

from stepstream.server.core.assistants import default_assistant_id
from stepstream.v1 import (
    assistants_pb2,
    assistants_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)
from tests.clients.programs import Output, Program, run_checked
from tests.proxy import ThreadedProxy

pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]

CLEAR_QUESTION = "graph neural networks for chemistry"
CLARIFIED_QUERY = "transformers in machine learning"


def get_run(channel: grpc.Channel, run_id: str) -> runs_pb2.Run:
    response: runs_pb2.GetRunResponse = runs_pb2_grpc.RunServiceStub(channel).GetRun(
        runs_pb2.GetRunRequest(run_id=run_id), timeout=10
    )
    return response.run


def assert_complete_event_log(output: Output, run: runs_pb2.Run) -> list[tuple[int, str, str]]:
    """Every event of the run printed once, in order, from queued to its last event."""
    events = output.events(run.run_id)
    assert [seq for seq, _, _ in events] == list(range(1, run.last_seq + 1))
    assert events[0][1] == "run_queued" and events[1][1] == "run_started"
    assert events[-1][1] == "run_finished"
    return events


def test_example_lists_graphs_streams_a_run_and_answers_the_interrupt(
    program: Program, examples_server: str, examples_channel: grpc.Channel
) -> None:
    result = program.run("research", examples_server)
    failed = f"{program.language} example failed:\n{result.stdout[-3000:]}\n{result.stderr}"
    assert result.returncode == 0, failed
    output = Output.parse(result.stdout)

    assert ["graph", "research_assistant", "clarify,plan,search,synthesize"] in output.all("graph")

    # A run started in the background, its events followed as they came.
    _, run_id, session_id = output.first("started")
    run = get_run(examples_channel, run_id)
    assert run.status == runs_pb2.RUN_STATUS_SUCCEEDED and run.session_id == session_id
    events = assert_complete_event_log(output, run)
    started_nodes = [detail for _, kind, detail in events if kind == "task_started"]
    assert sorted(started_nodes) == ["clarify", "plan", "search", "search", "search", "search", "synthesize"]
    assert sum(kind == "message_chunk" for _, kind, _ in events) > 10  # the answer streamed token by token
    stored: dict[str, Any] = json.loads(run.values_json)
    assert stored["query"] == CLEAR_QUESTION
    assert output.answer(run_id) == stored["answer"] and CLEAR_QUESTION in stored["answer"]

    # The session: the vague question stops at the clarification interrupt, the resume finishes it.
    session = output.first("session")[1]
    interrupted_id = output.first("interrupt")[1]
    interrupted = get_run(examples_channel, interrupted_id)
    assert interrupted.session_id == session and interrupted.status == runs_pb2.RUN_STATUS_INTERRUPTED
    assert_complete_event_log(output, interrupted)
    assert "interrupt_raised" in [kind for _, kind, _ in output.events(interrupted_id)]
    question = json.loads(" ".join(output.first("interrupt")[2:]))
    assert question == json.loads(interrupted.interrupts[0].value_json)["question"]
    assert question == '"transformers" is broad. What exactly should I research?'

    resumed = get_run(examples_channel, output.first("resumed")[1])
    assert resumed.session_id == session and resumed.status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert_complete_event_log(output, resumed)
    state: sessions_pb2.GetSessionStateResponse = sessions_pb2_grpc.SessionServiceStub(
        examples_channel
    ).GetSessionState(sessions_pb2.GetSessionStateRequest(session_id=session), timeout=10)
    values: dict[str, Any] = json.loads(state.state.values_json)
    assert values["query"] == CLARIFIED_QUERY
    assert [m["type"] for m in values["messages"]] == ["human", "ai", "human", "ai"]
    assert output.answer(resumed.run_id) == values["answer"] and CLARIFIED_QUERY in values["answer"]


def test_example_runs_an_assistant_and_the_default_with_a_context(
    program: Program, server_address: str, graphs_channel: grpc.Channel
) -> None:
    result = program.run("assistant", server_address)
    assert result.returncode == 0, f"{program.language} example failed:\n{result.stdout}\n{result.stderr}"
    output = Output.parse(result.stdout)
    lang = program.language
    assert output.first("schema")[1] == "Persona"
    assert output.first("default")[1] == default_assistant_id("context")

    _, assistant_id, version = output.first("assistant")
    assert version == "1"
    stored = assistants_pb2_grpc.AssistantServiceStub(graphs_channel).GetAssistant(
        assistants_pb2.GetAssistantRequest(assistant_id=assistant_id), timeout=10
    )
    assert json.loads(stored.assistant.config_json) == {"model": f"{lang}-model"}
    assert json.loads(stored.assistant.context_json) == {"user": lang}
    assert json.loads(stored.assistant.metadata_json) == {"client": lang}

    # The run as the assistant: its saved config, its context under the run's own.
    _, run_id, seen, model = output.first("assistant_run")
    assert (seen, model) == (f"{lang}/loud/3", f"{lang}-model")
    run = get_run(graphs_channel, run_id)
    assert (run.assistant_id, run.assistant_version, run.graph_id) == (assistant_id, 1, "context")
    assert json.loads(run.context_json) == {"user": lang, "tone": "loud"}
    assert json.loads(run.values_json)["seen"] == [seen]

    # The graph's id as the assistant id: its default assistant.
    _, run_id, default_id, seen = output.first("default_run")
    assert default_id == default_assistant_id("context") and seen == f"{lang}-default/plain/1"
    assert get_run(graphs_channel, run_id).assistant_id == default_id


def start_slow_run(channel: grpc.Channel, steps: int, delay: float) -> str:
    payload = json.dumps({"steps": steps, "delay": delay})
    request = runs_pb2.StartRunRequest(graph_id="slow", input_json=payload)
    response: runs_pb2.StartRunResponse = runs_pb2_grpc.RunServiceStub(channel).StartRun(request, timeout=10)
    return response.run.run_id


def test_join_reconnects_after_cuts_and_misses_nothing(
    program: Program, server_address: str, graphs_channel: grpc.Channel
) -> None:
    # Long enough that the run is still going when a slow-starting program (a JVM) joins it.
    run_id = start_slow_run(graphs_channel, steps=6, delay=0.8)
    with ThreadedProxy(server_address) as proxy:
        process = program.popen("join", proxy.address, run_id, "0")
        assert process.stdout is not None
        printed: list[str] = []
        cuts = 0
        for line in process.stdout:
            printed.append(line)
            # Cut each connection once (a replayed burst holds several supersteps), twice in all:
            # the stream breaks mid-run and the helper must rejoin after the last seq it printed.
            if " superstep_finished" in line and cuts < 2 and proxy.connections > cuts:
                proxy.cut()
                cuts += 1
        try:
            stderr = process.communicate(timeout=120)[1]
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        connections = proxy.connections
    assert process.returncode == 0, f"{program.language} join failed:\n{''.join(printed)}\n{stderr}"
    assert cuts == 2
    assert connections >= 3, "the client never reconnected after the cuts"
    run = get_run(graphs_channel, run_id)
    assert run.status == runs_pb2.RUN_STATUS_SUCCEEDED
    assert_complete_event_log(Output.parse("".join(printed)), run)


def test_join_from_a_cursor_prints_only_later_events(
    program: Program, server_address: str, graphs_channel: grpc.Channel
) -> None:
    run_id = start_slow_run(graphs_channel, steps=2, delay=0)
    wait: runs_pb2.WaitRunResponse = runs_pb2_grpc.RunServiceStub(graphs_channel).WaitRun(
        runs_pb2.WaitRunRequest(run_id=run_id, timeout_seconds=30), timeout=40
    )
    result = program.run("join", server_address, run_id, "3")
    assert result.returncode == 0, result.stderr
    events = Output.parse(result.stdout).events(run_id)
    assert [seq for seq, _, _ in events] == list(range(4, wait.run.last_seq + 1))
    assert events[-1][1] == "run_finished"


def test_join_of_an_unknown_run_fails_with_not_found(program: Program, server_address: str) -> None:
    result = program.run("join", server_address, "no-such-run", "0")
    assert result.returncode == 1, result.stdout
    # Go prints the code as NotFound, grpc-js and grpc-java as NOT_FOUND.
    assert "NOT_FOUND" in result.stderr or "code = NotFound" in result.stderr, result.stderr
    assert "no-such-run" in result.stderr


def test_helper_unit_tests(program: Program) -> None:
    """Each client's own tests of its helper: go test, node --test, JUnit through Maven Surefire."""
    report = run_checked(list(program.unit_tests), program.cwd)
    if program.language == "go":
        assert re.search(r"^ok\s+\S+/clients/go/stepstream\s", report, re.MULTILINE), report
    elif program.language == "typescript":
        assert re.search(r"^# pass [1-9]", report, re.MULTILINE) and "# fail 0" in report, report
    else:
        reports = list((program.cwd / "target" / "surefire-reports").glob("*.txt"))
        summary = "".join(r.read_text() for r in reports)
        assert re.search(r"Tests run: [1-9]\d*, Failures: 0, Errors: 0", summary), summary
