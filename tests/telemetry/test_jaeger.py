"""End to end: a server exports to a real Jaeger v2 process, and Jaeger's query API has the run's trace.

Jaeger is built by `make jaeger-build` (which `make test` runs; the binary is
cached). Run through plain pytest without it, the test is skipped on a
developer's machine and fails in CI.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stepstream.v1 import runs_pb2
from tests.rpc import Api
from tests.support import ServerProcess
from tools import jaeger as jaeger_tool

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def jaeger() -> Iterator[jaeger_tool.Jaeger]:
    binary = jaeger_tool.binary_path()
    if not binary.exists():
        message = f"no Jaeger binary at {binary}: run `python tools/jaeger.py build` (or `make jaeger`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with jaeger_tool.Jaeger(binary) as started:
        yield started


def _wait_for_trace(jaeger: jaeger_tool.Jaeger, trace_id: str, operations: int) -> dict[str, Any]:
    """Spans reach Jaeger through batches: poll until the trace has at least `operations` spans."""
    deadline = time.monotonic() + 30
    while True:
        trace = jaeger.trace(trace_id)
        if trace is not None and len(trace["spans"]) >= operations:
            return trace
        if time.monotonic() > deadline:
            raise AssertionError(f"Jaeger has {trace and len(trace['spans'])} spans of trace {trace_id}")
        time.sleep(0.2)


def test_jaeger_shows_the_run_with_its_supersteps_and_tasks(
    jaeger: jaeger_tool.Jaeger, tmp_path: pathlib.Path
) -> None:
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'stepstream.db'}")
    server.env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    api = Api(server.start())
    try:
        request = runs_pb2.StreamRunRequest(
            run=runs_pb2.StartRunRequest(graph_id="fanout", input_json='{"n": 3, "delay": 0.01}')
        )
        # The caller's W3C context, as any OpenTelemetry-instrumented gRPC client sends it.
        metadata = (("traceparent", f"00-{trace_id}-{caller_span}-01"),)
        replies = list(api.runs.StreamRun(request, metadata=metadata))
        assert replies[-1].events[-1].WhichOneof("kind") == "run_finished"
    finally:
        api.close()
        server.stop()  # SIGTERM flushes the last spans
    # The run, 2 supersteps, 3 + 1 tasks.
    trace = _wait_for_trace(jaeger, trace_id, 7)

    spans = {s["spanID"]: s for s in trace["spans"]}

    def parent(span: dict[str, Any]) -> str:
        (ref,) = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        return str(ref["spanID"])

    def named(name: str) -> list[dict[str, Any]]:
        return sorted((s for s in spans.values() if s["operationName"] == name), key=lambda s: s["startTime"])

    (run,) = named("invoke_workflow fanout")
    assert parent(run) == caller_span  # the caller's span, from the call's traceparent
    assert trace["processes"][run["processID"]]["serviceName"] == "stepstream"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["gen_ai.operation.name"] == "invoke_workflow"
    assert tags["stepstream.run.status"] == "succeeded"
    steps = [s for s in spans.values() if s["operationName"].startswith("superstep")]
    steps.sort(key=lambda s: s["startTime"])
    assert [s["operationName"] for s in steps] == ["superstep 1", "superstep 2"]
    assert all(parent(s) == run["spanID"] for s in steps)
    assert (
        sorted(s["operationName"] for s in spans.values() if parent(s) == steps[0]["spanID"])
        == ["task work"] * 3
    )
    assert [s["operationName"] for s in spans.values() if parent(s) == steps[1]["spanID"]] == ["task reduce"]
    lines = list(jaeger_tool.tree(trace))
    assert lines[0].startswith("invoke_workflow fanout  [stepstream]")
    assert any(line.startswith("  superstep 1  [stepstream]") for line in lines)
