"""/inspector/runs/{id}/trace: the server reads the run's trace from a real local Jaeger (its
query API, tools/jaeger.py) after checking the caller owns the run; the run object carries the
trace id; a clear 503 when Jaeger is not configured or cannot be reached."""

from __future__ import annotations

import os
import pathlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.peers.servers import free_port
from tests.server.http.door import Door, door
from tests.server.http.inspector_support import INSPECTOR_JSON, join, start_run
from tools import jaeger as jaeger_tool

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

UI = "http://jaeger.example:16686"


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


@pytest.fixture(scope="module")
def traced(jaeger: jaeger_tool.Jaeger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    workdir = pathlib.Path(tmp_path_factory.mktemp("traced"))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    args = ("--jaeger-query", jaeger.query_url, "--jaeger-ui", UI)
    with door(workdir, *args, config=INSPECTOR_JSON, env=env) as server:
        yield server


def _trace(http: httpx.Client, run_id: str, spans: int) -> dict[str, Any]:
    """Spans reach Jaeger in batches: ask until the trace has at least `spans` of them."""
    deadline = time.monotonic() + 30
    while True:
        answer = http.get(f"/inspector/runs/{run_id}/trace")
        if answer.status_code == 200 and len(answer.json()["spans"]) >= spans:
            body: dict[str, Any] = answer.json()
            return body
        assert answer.status_code in (200, 404), answer.text
        if time.monotonic() > deadline:
            raise AssertionError(f"no trace of {spans} spans: {answer.status_code} {answer.text[:300]}")
        time.sleep(0.2)


def test_the_trace_comes_from_jaeger_for_the_owner_only(traced: Door) -> None:
    with traced.http("alice") as alice, traced.http("bob") as bob:
        run = start_run(alice, "fanfail", {"n": 3, "fail": -1, "delay": 0.01})
        join(alice, run)
        shown = alice.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}").json()
        trace_id = shown["trace_id"]
        assert len(trace_id) == 32 and int(trace_id, 16)
        assert alice.get(f"/inspector/runs/{run['run_id']}/timeline").json()["run"]["trace_id"] == trace_id
        # The run, its 3 supersteps and 5 tasks.
        trace = _trace(alice, run["run_id"], 9)
        assert trace["trace_id"] == trace_id and trace["jaeger_ui_url"] == f"{UI}/trace/{trace_id}"
        spans = {s["span_id"]: s for s in trace["spans"]}
        (root,) = [s for s in spans.values() if s["name"] == "invoke_workflow fanfail"]
        replica = alice.get("/inspector/config").json()["replica"]
        assert root["replica"] == replica and root["service"] == "stepstream"
        assert root["attributes"]["stepstream.run.id"] == run["run_id"]
        for span in spans.values():
            assert span["parent_id"] is None or span["parent_id"] in spans, span
            assert span["start_us"] > 0 and span["duration_us"] >= 0

        # Every task span lies under the run span.
        def ancestors(span: dict[str, Any]) -> list[str]:
            chain = []
            while span["parent_id"] in spans:
                span = spans[span["parent_id"]]
                chain.append(span["span_id"])
            return chain

        tasks = [s for s in spans.values() if s is not root and root["span_id"] in ancestors(s)]
        assert len(tasks) >= 8
        # Bob may not read alice's trace: the same 404 as for no run at all.
        hidden = bob.get(f"/inspector/runs/{run['run_id']}/trace")
        assert hidden.status_code == 404 and "not found" in hidden.json()["detail"]
        assert alice.get("/inspector/runs/no-such-run/trace").status_code == 404
        assert alice.get("/inspector/runs/bad%20id/trace").status_code == 422


def test_a_trace_without_jaeger_is_a_clear_503(tmp_path: pathlib.Path) -> None:
    closed = free_port()  # nothing listens there
    args = ("--jaeger-query", f"http://127.0.0.1:{closed}")
    with door(tmp_path, *args, config=INSPECTOR_JSON) as away, away.http() as http:
        # The caller's trace context (W3C traceparent) becomes the run's trace.
        trace_id = secrets.token_hex(16)
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        created = http.post(
            f"/threads/{thread_id}/runs", json={"assistant_id": "boom", "input": {}}, headers=headers
        ).json()
        assert created["trace_id"] == trace_id
        answer = http.get(f"/inspector/runs/{created['run_id']}/trace")
        assert answer.status_code == 503 and "cannot be reached" in answer.json()["detail"]
        assert http.get("/ok").status_code == 200


def test_untraced_runs_and_no_jaeger_configured(tmp_path: pathlib.Path) -> None:
    with door(tmp_path, config=INSPECTOR_JSON) as plain, plain.http() as http:
        untraced = start_run(http, "boom", {})
        assert "trace_id" not in untraced  # LangGraph's run object, unchanged for untraced runs
        answer = http.get(f"/inspector/runs/{untraced['run_id']}/trace")
        assert answer.status_code == 404 and "has no trace" in answer.json()["detail"]
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        headers = {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
        traced = http.post(
            f"/threads/{thread_id}/runs", json={"assistant_id": "boom", "input": {}}, headers=headers
        ).json()
        answer = http.get(f"/inspector/runs/{traced['run_id']}/trace")
        assert answer.status_code == 503 and "--jaeger-query" in answer.json()["detail"]
