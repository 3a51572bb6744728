"""Helpers of the inspector's door tests: its graphs, runs started over HTTP, SSE streams read."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.support import ROOT

INSPECTOR_JSON = ROOT / "tests" / "graphs" / "inspector.json"


def start_run(http: httpx.Client, graph: str, payload: dict[str, Any]) -> dict[str, Any]:
    thread_id = http.post("/threads", json={}).json()["thread_id"]
    response = http.post(f"/threads/{thread_id}/runs", json={"assistant_id": graph, "input": payload})
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


def join(http: httpx.Client, run: dict[str, Any]) -> None:
    http.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}/join").raise_for_status()


def sse_events(http: httpx.Client, path: str) -> Iterator[tuple[str, Any]]:
    """(event, decoded data) of an SSE stream, until the caller stops iterating."""
    with http.stream("GET", path, timeout=httpx.Timeout(30, read=30)) as response:
        response.raise_for_status()
        name = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name:
                yield name, json.loads(line.split(":", 1)[1])
                name = ""


def overview_until(
    http: httpx.Client, check: Callable[[dict[str, Any]], bool], limit_s: float = 60.0
) -> dict[str, Any]:
    """The first overview of the live stream that passes `check` (fails after `limit_s`)."""
    deadline = time.monotonic() + limit_s
    seen: dict[str, Any] = {}
    for name, data in sse_events(http, "/inspector/overview/stream"):
        assert name == "overview"
        seen = data
        if check(data):
            return data
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no overview passed the check; last: {seen}")


def graph(overview: dict[str, Any], graph_id: str) -> dict[str, Any]:
    for entry in overview["graphs"]:
        if entry["graph_id"] == graph_id:
            return dict(entry)
    idle = {"running": 0, "queued": 0, "finished_last_minute": 0, "errors_last_minute": 0}
    return {"graph_id": graph_id, **idle}
