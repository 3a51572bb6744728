"""The span tree of runs, read back from the SDK's in-memory exporter: run → supersteps → tasks."""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from stepstream.server.core import events as ev
from stepstream.server.core import records as rec
from stepstream.server.core.app import Core
from stepstream.server.core.start import OptionsRequest, StartRunRequest
from tests.support import ROOT
from tests.telemetry.conftest import Recorded, settings

OWNER = "local"


async def _run(core: Core, graph: str, inp: object, **options: object) -> rec.Run:
    run = await core.start_run(
        StartRunRequest(
            owner=OWNER, graph_id=graph, input_json=json.dumps(inp), options=OptionsRequest(**options)
        )
    )
    return await core.runs.wait(OWNER, run.run_id, 30)


async def _under_client_span(
    recorded: Recorded, core: Core, graph: str, inp: object
) -> tuple[rec.Run, ReadableSpan]:
    tracer = recorded.telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("client call"):
        run = await core.start_run(StartRunRequest(owner=OWNER, graph_id=graph, input_json=json.dumps(inp)))
    ended = await core.runs.wait(OWNER, run.run_id, 30)
    (client,) = recorded.named("client call")
    return ended, client


def _run_span(recorded: Recorded, run: rec.Run) -> ReadableSpan:
    (span,) = [
        s for s in recorded.named("invoke_workflow") if s.attributes["stepstream.run.id"] == run.run_id
    ]
    return span


async def test_a_run_is_one_span_under_its_caller_with_a_child_per_superstep_in_order(
    recorded: Recorded, core: Core
) -> None:
    run, client = await _under_client_span(recorded, core, "linear", {"x": 0})
    assert run.status == rec.RunStatus.SUCCEEDED
    span = _run_span(recorded, run)
    assert span.name == "invoke_workflow linear"
    assert span.parent is not None and span.parent.span_id == client.context.span_id
    assert span.context.trace_id == client.context.trace_id
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": "linear",
        "gen_ai.conversation.id": run.session_id,
        "stepstream.run.id": run.run_id,
        "stepstream.run.attempt": 1,
        "stepstream.replica": "replica-a",
        "stepstream.run.status": "succeeded",
    }
    steps = recorded.children(span, "superstep")
    assert [s.name for s in steps] == ["superstep 1", "superstep 2", "superstep 3"]
    assert [s.attributes["langgraph.step"] for s in steps] == [1, 2, 3]
    assert all(s.attributes["stepstream.tasks"] == 1 for s in steps)
    # Each superstep closes on its own checkpoint, and they follow one another.
    assert all(s.attributes["langgraph.checkpoint_id"] for s in steps)
    assert len({s.attributes["langgraph.checkpoint_id"] for s in steps}) == 3
    for before, after in itertools.pairwise(steps):
        assert before.end_time <= after.start_time
    for step, node in zip(steps, "abc", strict=True):
        (task,) = recorded.children(step)
        assert task.name == f"task {node}"
        assert task.attributes["langgraph.node"] == node
        assert task.attributes["stepstream.task.outcome"] == "finished"
        assert task.attributes["langgraph.task_id"]
        assert step.start_time <= task.start_time <= task.end_time <= step.end_time
    assert span.start_time <= steps[0].start_time and steps[-1].end_time <= span.end_time


async def test_fan_out_tasks_are_siblings_under_one_superstep(recorded: Recorded, core: Core) -> None:
    run = await _run(core, "fanout", {"n": 4, "delay": 0.01})
    assert run.status == rec.RunStatus.SUCCEEDED
    steps = recorded.children(_run_span(recorded, run), "superstep")
    assert [s.name for s in steps] == ["superstep 1", "superstep 2"]
    workers = recorded.children(steps[0])
    assert [t.name for t in workers] == ["task work"] * 4
    assert steps[0].attributes["stepstream.tasks"] == 4
    assert len({t.attributes["langgraph.task_id"] for t in workers}) == 4
    assert [t.name for t in recorded.children(steps[1])] == ["task reduce"]


async def test_a_failed_task_and_its_run_carry_the_error(recorded: Recorded, core: Core) -> None:
    run = await _run(core, "boom", {})
    assert run.status == rec.RunStatus.FAILED
    span = _run_span(recorded, run)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"
    (step,) = recorded.children(span, "superstep")
    (task,) = recorded.children(step)
    assert task.name == "task explode"
    assert task.status.status_code == StatusCode.ERROR
    assert task.attributes["stepstream.task.outcome"] == "failed"
    (event,) = [e for e in task.events if e.name == "exception"]
    assert event.attributes == {"exception.type": "ValueError", "exception.message": "boom"}


async def test_an_interrupt_is_an_event_and_ends_its_task_as_interrupted(
    recorded: Recorded, core: Core
) -> None:
    run = await _run(core, "ask", {"question": "colour?"})
    assert run.status == rec.RunStatus.INTERRUPTED
    span = _run_span(recorded, run)
    assert span.attributes["stepstream.run.status"] == "interrupted"
    assert span.status.status_code == StatusCode.UNSET
    (step,) = recorded.children(span, "superstep")
    (event,) = [e for e in step.events if e.name == "interrupt"]
    assert list(event.attributes["stepstream.interrupt.ids"]) == [run.interrupts[0]["interrupt_id"]]
    (task,) = recorded.children(step)
    assert task.attributes["stepstream.task.outcome"] == "interrupted"
    assert task.end_time == event.timestamp


async def test_a_cancelled_run_records_the_cancellation(recorded: Recorded, core: Core) -> None:
    run = await core.start_run(
        StartRunRequest(owner=OWNER, graph_id="slow", input_json='{"steps": 50, "delay": 0.05}')
    )
    async for batch in core.eventlog.follow(run.run_id, 0, ev.EventFilter()):
        if any(e.kind == ev.SUPERSTEP_FINISHED for e in batch):
            break
    ended = await core.runs.cancel(OWNER, run.run_id, rollback=False, reason="user gave up")
    assert ended.status == rec.RunStatus.CANCELLED
    span = _run_span(recorded, run)
    assert span.attributes["stepstream.run.status"] == "cancelled"
    (event,) = [e for e in span.events if e.name == "cancelled"]
    assert event.attributes == {"stepstream.cancel.reason": "user gave up"}
    last = recorded.children(span, "superstep")[-1]
    assert last.attributes["stepstream.superstep.outcome"] == "cancelled"
    assert [t.attributes["stepstream.task.outcome"] for t in recorded.children(last)] == ["cancelled"]


async def test_a_subgraph_s_supersteps_hang_under_the_task_that_runs_it(
    recorded: Recorded, core: Core
) -> None:
    run = await _run(core, "nested", {"x": 0})
    assert run.status == rec.RunStatus.SUCCEEDED
    steps = recorded.children(_run_span(recorded, run), "superstep")
    (sub_task,) = [t for s in steps for t in recorded.children(s) if t.name == "task sub"]
    inner_steps = recorded.children(sub_task, "superstep")
    assert inner_steps, "the subgraph's supersteps are missing"
    assert all(s.attributes["langgraph.checkpoint_ns"].startswith("sub:") for s in inner_steps)
    assert [t.name for s in inner_steps for t in recorded.children(s)] == ["task inner"]


async def test_rate_limit_acquires_are_spans_under_their_task(
    recorded: Recorded, tmp_path: pathlib.Path
) -> None:
    limits = str(ROOT / "tests" / "graphs" / "limits.toml")
    core = Core(settings(tmp_path / "db.sqlite", replica="replica-a", limits_path=limits))
    await core.start()
    try:
        run = await _run(core, "limited", {"n": 3})
    finally:
        await core.stop(grace=0)
    assert run.status == rec.RunStatus.SUCCEEDED
    (step,) = recorded.children(_run_span(recorded, run), "superstep")
    tasks = recorded.children(step)
    assert len(tasks) == 3
    for task in tasks:
        (acquire,) = recorded.children(task)
        assert acquire.name == "acquire test-api"
        assert acquire.attributes["stepstream.ratelimit.key"] == "test-api"
        assert acquire.attributes["stepstream.ratelimit.mode"] == "shared"
    waits = sorted(
        t.attributes["stepstream.ratelimit.wait_s"] for t in (recorded.children(t)[0] for t in tasks)
    )
    # Burst 1 at 20/s: the first call goes at once, the others wait for their slots in turn.
    assert waits[0] == 0.0 and waits[1] > 0 and waits[2] > waits[1]


async def _wait_supersteps(core: Core, run_id: str, count: int) -> None:
    seen = 0
    async for batch in core.eventlog.follow(run_id, 0, ev.EventFilter()):
        seen += sum(1 for e in batch if e.kind == ev.SUPERSTEP_FINISHED)
        if seen >= count:
            return


async def _resume_elsewhere(recorded: Recorded, tmp_path: pathlib.Path, with_caller: bool) -> rec.Run:
    """Start a slow run on replica A, hand it back mid-run (shutdown), let replica B finish it."""
    db = tmp_path / "db.sqlite"
    first = Core(settings(db, replica="replica-a"))
    await first.start()
    tracer = trace.get_tracer("test", tracer_provider=recorded.telemetry.tracer_provider)
    with tracer.start_as_current_span("client call") if with_caller else _nothing():
        run = await first.start_run(
            StartRunRequest(owner=OWNER, graph_id="slow", input_json='{"steps": 6, "delay": 0.05}')
        )
    await _wait_supersteps(first, run.run_id, 2)
    await first.stop(grace=0)
    second = Core(settings(db, replica="replica-b"))
    await second.start()
    try:
        ended = await second.runs.wait(OWNER, run.run_id, 30)
    finally:
        await second.stop(grace=0)
    assert ended.status == rec.RunStatus.SUCCEEDED and ended.attempt == 2
    return ended


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_a_resumed_run_continues_its_trace_with_a_linked_attempt(
    recorded: Recorded, tmp_path: pathlib.Path
) -> None:
    run = await _resume_elsewhere(recorded, tmp_path, with_caller=True)
    (client,) = recorded.named("client call")
    first, second = sorted(recorded.named("invoke_workflow"), key=lambda s: s.start_time or 0)
    assert (
        first.attributes["stepstream.run.attempt"] == 1 and second.attributes["stepstream.run.attempt"] == 2
    )
    assert first.attributes["stepstream.replica"] == "replica-a"
    assert second.attributes["stepstream.replica"] == "replica-b"
    assert first.attributes["stepstream.run.status"] == "handed_back"
    # Both attempts are children of the caller's span: one trace.
    for attempt in (first, second):
        assert attempt.context.trace_id == client.context.trace_id
        assert attempt.parent is not None and attempt.parent.span_id == client.context.span_id
    (link,) = second.links
    assert link.context.span_id == first.context.span_id
    # Supersteps from both replicas; the second picks up where the first stopped, repeating none.
    steps_a = [s.attributes["langgraph.step"] for s in recorded.children(first, "superstep")]
    steps_b = [s.attributes["langgraph.step"] for s in recorded.children(second, "superstep")]
    finished_a = [
        s.attributes["langgraph.step"]
        for s in recorded.children(first, "superstep")
        if "langgraph.checkpoint_id" in (s.attributes or {})
    ]
    assert len(finished_a) >= 2 and steps_b
    assert not set(finished_a) & set(steps_b)
    assert sorted(set(finished_a) | set(steps_b)) == list(range(min(steps_a), max(steps_b) + 1))
    assert json.loads(run.values_json)["done"] == [0, 1, 2, 3, 4, 5]


async def test_a_run_without_a_caller_resumes_in_its_own_trace(
    recorded: Recorded, tmp_path: pathlib.Path
) -> None:
    await _resume_elsewhere(recorded, tmp_path, with_caller=False)
    first, second = sorted(recorded.named("invoke_workflow"), key=lambda s: s.start_time or 0)
    assert first.parent is None
    assert second.context.trace_id == first.context.trace_id
    assert second.parent is not None and second.parent.span_id == first.context.span_id


async def test_the_run_row_holds_the_callers_and_the_attempts_context(recorded: Recorded, core: Core) -> None:
    run, client = await _under_client_span(recorded, core, "linear", {"x": 0})
    stored = orjson.loads((await core.store.get_run(OWNER, run.run_id)).trace_context or "{}")
    span = _run_span(recorded, run)
    trace_id = f"{client.context.trace_id:032x}"
    assert stored["parent"]["traceparent"].startswith(f"00-{trace_id}-{client.context.span_id:016x}-")
    assert stored["attempt"]["traceparent"].startswith(f"00-{trace_id}-{span.context.span_id:016x}-")


async def test_run_metrics(recorded: Recorded, core: Core) -> None:
    await _run(core, "linear", {"x": 0})
    await _run(core, "fanout", {"n": 2})
    steps = sum(p.count for p in recorded.metric_points("stepstream.superstep.duration"))
    assert steps == 5  # 3 for linear, 2 for fanout
    tasks = {p.attributes["node"]: p.count for p in recorded.metric_points("stepstream.task.duration")}
    assert tasks == {"a": 1, "b": 1, "c": 1, "work": 2, "reduce": 1}
    ended = {p.attributes["graph"]: p.value for p in recorded.metric_points("stepstream.runs.ended")}
    assert ended == {"linear": 1, "fanout": 1}
    (running,) = recorded.metric_points("stepstream.runs.running")
    assert running.value == 0


async def test_runs_running_here_and_queued_for_any_replica(
    recorded: Recorded, tmp_path: pathlib.Path
) -> None:
    core = Core(settings(tmp_path / "db.sqlite", max_active_runs=1))
    await core.start()
    try:
        slow = '{"steps": 100, "delay": 0.05}'
        first = await core.start_run(StartRunRequest(owner=OWNER, graph_id="slow", input_json=slow))
        await core.start_run(StartRunRequest(owner=OWNER, graph_id="slow", input_json=slow))
        await _wait_supersteps(core, first.run_id, 1)
        # Metrics are collected on the exporter's thread, never on the replica's loop.
        points = await asyncio.to_thread(
            lambda: {n: recorded.metric_points(f"stepstream.runs.{n}") for n in ("running", "queued")}
        )
        assert [p.value for p in points["running"]] == [1]
        assert [p.value for p in points["queued"]] == [1]
    finally:
        await core.stop(grace=0)


async def test_telemetry_off_adds_nothing(tmp_path: pathlib.Path) -> None:
    core = Core(settings(tmp_path / "db.sqlite"))
    assert core.telemetry is None and core.executor.telemetry is None
    await core.start()
    try:
        run = await _run(core, "linear", {"x": 0})
        assert (await core.store.get_run(OWNER, run.run_id)).trace_context is None
    finally:
        await core.stop(grace=0)
