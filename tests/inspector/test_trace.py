"""The run's trace in the inspector, in headless Chromium against live servers: drawn as a waterfall
from /inspector/runs/{id}/trace (a real local Jaeger, tools/jaeger.py) and linked to Jaeger's UI;
a trace that cannot be read (tracing off, Jaeger away) shows the server's reason."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from bench.peers.servers import free_port
from tests.inspector.conftest import Live, serve

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

Shoot = Callable[..., pathlib.Path]


def _start(live: Live, graph_id: str, payload: dict[str, Any]) -> tuple[str, str]:
    with live.http() as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        started = http.post(f"/threads/{thread_id}/runs", json={"assistant_id": graph_id, "input": payload})
        started.raise_for_status()
        return thread_id, started.json()["run_id"]


def _join(live: Live, thread_id: str, run_id: str) -> dict[str, Any]:
    with live.http() as http:
        http.get(f"/threads/{thread_id}/runs/{run_id}/join").raise_for_status()
        return dict(http.get(f"/threads/{thread_id}/runs/{run_id}").json())


def _timeline(live: Live, run_id: str) -> dict[str, Any]:
    with live.http() as http:
        return dict(http.get(f"/inspector/runs/{run_id}/timeline").json())


JAEGER_UI = "http://jaeger.example:16686"


@pytest.fixture(scope="module")
def traced(mockapi: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server exporting its traces to a local Jaeger (tools/jaeger.py) and reading them back."""
    from tools import jaeger as jaeger_tool

    binary = jaeger_tool.binary_path()
    if not binary.exists():
        message = f"no Jaeger binary at {binary}: run `python tools/jaeger.py build` (or `make jaeger`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with jaeger_tool.Jaeger(binary) as jaeger:
        args = ("--jaeger-query", jaeger.query_url, "--jaeger-ui", JAEGER_UI)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with serve(tmp_path_factory.mktemp("traced"), mockapi, *args, env=env) as server:
            yield server


def test_the_trace_is_drawn_and_linked_to_jaeger(page: Page, traced: Live, shoot: Shoot) -> None:
    thread_id, run_id = _start(traced, "research_assistant", {"query": "black holes in recent research"})
    assert _join(traced, thread_id, run_id)["status"] == "success"
    trace_id = _timeline(traced, run_id)["run"]["trace_id"]
    assert trace_id
    # Spans reach Jaeger in batches, the run's own span (it ends last) among the last: wait until
    # its tasks and a root span are there and two reads a second apart agree.
    with traced.http() as http:
        deadline = time.monotonic() + 30
        before: list[str] = []
        while True:
            answer = http.get(f"/inspector/runs/{run_id}/trace")
            spans = answer.json()["spans"] if answer.status_code == 200 else []
            names = sorted(s["name"] for s in spans)
            complete = (
                any(s["parent_id"] is None for s in spans)
                and sum("synthesize" in n for n in names) >= 1
                and sum("search" in n for n in names) >= 4
            )
            if complete and names == before:
                break
            before = names
            assert time.monotonic() < deadline, (answer.status_code, answer.text[:300])
            time.sleep(1.0)
        trace = answer.json()
    page.goto(f"{traced.url}/ui/#/threads/{thread_id}/runs/{run_id}")
    page.click("#load-trace")
    page.wait_for_selector("#trace .span-row")
    # Every span a row, each under its parent.
    rows = page.eval_on_selector_all("#trace .span-row", "rows => rows.map(r => r.dataset.span)")
    assert sorted(rows) == sorted(s["name"] for s in trace["spans"])
    roots = [s["name"] for s in trace["spans"] if s["parent_id"] is None]
    assert rows[0] in roots
    assert page.get_attribute("#jaeger-link", "href") == f"{JAEGER_UI}/trace/{trace_id}"
    shoot("trace")


def test_a_trace_that_cannot_be_read_says_why(
    page: Page, live: Live, mockapi: str, tmp_path: pathlib.Path
) -> None:
    # Tracing off: the run has no trace (404). Jaeger away: 503. The page shows the server's reason.
    thread_id, run_id = _start(live, "steps", {"count": 1, "pace": 0.01})
    _join(live, thread_id, run_id)
    cases = [(live, thread_id, run_id, 404)]
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": nowhere, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with serve(tmp_path, mockapi, "--jaeger-query", nowhere, env=env) as away:
        away_thread, away_run = _start(away, "steps", {"count": 1, "pace": 0.01})
        _join(away, away_thread, away_run)
        cases.append((away, away_thread, away_run, 503))
        for server, thread, run, status in cases:
            with server.http() as http:
                answer = http.get(f"/inspector/runs/{run}/trace")
            assert answer.status_code == status, answer.text
            page.goto(f"{server.url}/ui/#/threads/{thread}/runs/{run}")
            page.click("#load-trace")
            error = page.wait_for_selector("#trace-error")
            assert error is not None and error.inner_text() == f"{status}: {answer.json()['detail']}"
