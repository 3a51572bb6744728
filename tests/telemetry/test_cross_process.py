"""One run, two replicas and a sidecar, one trace: spans collected by an OTLP receiver in the test.

Replica A starts a rate-limited run for a traced client and is killed
(SIGKILL) mid-run; replica B, on the same database, resumes it. Every process
exports to the receiver, as it would to Jaeger.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from stepstream.server.process import wait_serving
from stepstream.telemetry.receiver import OtlpReceiver, ReceivedSpan
from stepstream.v1 import runs_pb2, runs_pb2_grpc
from tests.rpc import Api, kinds
from tests.support import ROOT, ServerProcess

pytestmark = pytest.mark.process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        # Export soon after a span ends, so a killed replica has sent what it finished.
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


@contextlib.contextmanager
def _sidecar(env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "stepstream.ratelimiter",
        "--port",
        str(port),
        "--limit",
        "test-api=20/s burst 1",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_serving(f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)  # flushes its spans
        proc.wait(10)


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        yield started


def test_a_run_killed_on_one_replica_and_resumed_on_another_is_one_trace(
    receiver: OtlpReceiver, tmp_path: pathlib.Path
) -> None:
    env = _otel_env(receiver)
    db = f"sqlite+aiosqlite:///{tmp_path / 'stepstream.db'}"
    client_tracing = TracerProvider()
    client_tracing.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True))
    )
    tracer = client_tracing.get_tracer("test client")

    with _sidecar(env) as sidecar:
        replica_a = ServerProcess(db, "--ratelimiter", sidecar)
        replica_a.env.update(env)
        address_a = replica_a.start()
        try:
            channel = intercept_channel(
                grpc.insecure_channel(address_a), client_interceptor(tracer_provider=client_tracing)
            )
            with tracer.start_as_current_span("client request") as root:
                request = runs_pb2.StartRunRequest(graph_id="paced", input_json='{"steps": 8, "delay": 0.1}')
                run = runs_pb2_grpc.RunServiceStub(channel).StartRun(request).run
            trace_id = f"{root.get_span_context().trace_id:032x}"
            channel.close()
            api = Api(address_a)
            events = []
            for reply in api.runs.JoinRun(runs_pb2.JoinRunRequest(run_id=run.run_id)):
                events += reply.events
                if kinds(events).count("superstep_finished") >= 3:
                    break
            api.close()

            def a_supersteps(spans: list[ReceivedSpan]) -> bool:
                return sum(1 for s in spans if s.name.startswith("superstep") and s.trace_id == trace_id) >= 3

            receiver.wait_for(a_supersteps)
        finally:
            replica_a.kill()

        replica_b = ServerProcess(db, "--ratelimiter", sidecar)
        replica_b.env.update(env)
        api = Api(replica_b.start())
        try:
            done = api.wait(run.run_id)
            assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED and done.attempt == 2
        finally:
            api.close()
            replica_b.stop()  # SIGTERM: flushes its spans
    client_tracing.shutdown()

    spans = receiver.spans(trace_id)
    by_id = _by_id(spans)
    replica_spans = [s for s in spans if s.service == "stepstream"]
    instances = {s.instance for s in replica_spans}
    assert len(instances) == 2, f"expected spans from two replicas, got {instances}"

    # The caller's CLIENT span for StartRun (under its "client request") is the parent of the run.
    (client_call,) = [s for s in spans if s.name == "/stepstream.v1.RunService/StartRun"]
    assert client_call.kind == SpanKind.CLIENT.value + 1  # OTLP kinds count from 1
    assert client_call.service != "stepstream"
    assert by_id[client_call.parent_id].name == "client request"

    # Replica B's attempt is a child of the same caller, linked to A's attempt (whose span died with A).
    (attempt_b,) = [s for s in replica_spans if s.name == "invoke_workflow paced"]
    assert attempt_b.attributes["stepstream.run.attempt"] == 2
    assert attempt_b.parent_id == client_call.span_id
    (attempt_a_id,) = attempt_b.links
    steps = [s for s in replica_spans if s.name.startswith("superstep")]
    steps_a = [s for s in steps if s.parent_id == attempt_a_id]
    steps_b = [s for s in steps if s.parent_id == attempt_b.span_id]
    (instance_a,) = {s.instance for s in steps_a}
    assert {s.instance for s in steps_b} == {attempt_b.instance} != {instance_a}
    numbers_a = sorted(s.attributes["langgraph.step"] for s in steps_a)
    numbers_b = sorted(s.attributes["langgraph.step"] for s in steps_b)
    assert len(numbers_a) >= 3 and numbers_b
    assert numbers_a == list(range(1, len(numbers_a) + 1))
    assert numbers_b[-1] == 8 and min(numbers_b) <= len(numbers_a) + 1

    # Every acquire has its server half in the sidecar, under the replica's acquire span.
    sidecar_spans = [s for s in spans if s.service == "stepstream-ratelimiter"]
    assert sidecar_spans, "no span from the sidecar in the run's trace"
    died_with_a: list[ReceivedSpan] = []
    unanswered = 0
    for span in sidecar_spans:
        assert span.name == "acquire test-api" and span.kind == SpanKind.SERVER.value + 1
        if span.parent_id not in by_id:
            # A's own acquire span, open or not yet exported when A was killed mid-acquire.
            unanswered += 1
            continue
        caller = by_id[span.parent_id]
        assert caller.name == "acquire test-api" and caller.service == "stepstream"
        if caller.parent_id in by_id:
            assert by_id[caller.parent_id].name == "task tick"
        else:
            died_with_a.append(caller)  # the task that was running when A was killed
    # One task runs at a time: at most one acquire was under way when A died.
    assert unanswered + len(died_with_a) <= 1 and all(c.instance == instance_a for c in died_with_a)
    assert {by_id[s.parent_id].instance for s in sidecar_spans if s.parent_id in by_id} == instances
