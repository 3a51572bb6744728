"""The inspector's live views in headless Chromium against live servers: the overview updates
while runs execute, a research-assistant run shows its supersteps and fan-out tasks, a failed
task shows its error, and a replica killed mid-run shows the takeover (two replicas on
PostgreSQL). They read stepstream's /inspector endpoints (docs/inspector.md, "Endpoints")."""

from __future__ import annotations

import concurrent.futures
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from bench.peers.servers import free_port
from stepstream.server.process import ServerProcess
from stepstream.server.storage.db import upgrade
from tests.inspector.conftest import Live, write_config
from tests.inspector.graphs import UNREACHABLE
from tests.pgserver import create_database

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

Shoot = Callable[..., pathlib.Path]


def _start(live: Live, graph_id: str, payload: dict[str, Any]) -> tuple[str, str]:
    with live.http() as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": graph_id, "input": payload, "stream_mode": ["updates", "messages-tuple"]}
        started = http.post(f"/threads/{thread_id}/runs", json=body)
        started.raise_for_status()
        return thread_id, started.json()["run_id"]


def _join(live: Live, thread_id: str, run_id: str) -> dict[str, Any]:
    with live.http() as http:
        http.get(f"/threads/{thread_id}/runs/{run_id}/join").raise_for_status()
        return dict(http.get(f"/threads/{thread_id}/runs/{run_id}").json())


def _timeline(live: Live, run_id: str) -> dict[str, Any]:
    with live.http() as http:
        answer = http.get(f"/inspector/runs/{run_id}/timeline")
        answer.raise_for_status()
        return dict(answer.json())


def _number(page: Page, selector: str) -> int:
    return int(page.inner_text(selector).strip() or "0")


def test_the_overview_updates_while_runs_execute(page: Page, live: Live, shoot: Shoot) -> None:
    page.goto(f"{live.url}/ui/#/")
    page.wait_for_function("Number(document.querySelector('#overview')?.dataset.updates) >= 1")
    first = int(page.get_attribute("#overview", "data-updates") or "0")
    runs = [_start(live, "steps", {"count": 3, "pace": 1.0}) for _ in range(4)]

    # The runs show up as running, on the graph's row and on the replica's.
    page.wait_for_function(
        "Number(document.querySelector('#graphs tr[data-graph=\"steps\"] td.running')?.textContent) >= 1"
    )
    assert _number(page, "#running .value") >= 1
    replicas = page.eval_on_selector_all(
        "#replicas tr[data-replica]", "rows => rows.map(r => r.dataset.replica)"
    )
    assert len(replicas) == 1, replicas
    assert page.inner_text(f'#replicas tr[data-replica="{replicas[0]}"] .replica-state') == "serving"
    shoot("overview")

    finished = [threading.Thread(target=_join, args=(live, *run)) for run in runs]
    for joiner in finished:
        joiner.start()
    for joiner in finished:
        joiner.join()
    # ...and then as finished in the last minute, with nothing left running.
    page.wait_for_function(
        "Number(document.querySelector('#graphs tr[data-graph=\"steps\"] td.finished')?.textContent) >= 4"
        " && Number(document.querySelector('#graphs tr[data-graph=\"steps\"] td.running')?.textContent) === 0"
    )
    assert int(page.get_attribute("#overview", "data-updates") or "0") > first + 1


def test_a_research_run_shows_its_supersteps_and_fan_out(page: Page, live: Live, shoot: Shoot) -> None:
    thread_id, run_id = _start(live, "research_assistant", {"query": "protein folding in recent research"})
    assert _join(live, thread_id, run_id)["status"] == "success"
    timeline = _timeline(live, run_id)
    page.goto(f"{live.url}/ui/#/threads/{thread_id}/runs/{run_id}")
    page.wait_for_selector("#timeline .step")
    shown = page.eval_on_selector_all(
        "#timeline .step",
        "steps => steps.map(s => [...s.querySelectorAll('.bar')]"
        ".map(b => [b.dataset.task, b.dataset.status]))",
    )
    expected = [[[t["name"], t["status"]] for t in step["tasks"]] for step in timeline["supersteps"]]
    assert shown == expected
    names = [sorted({name for name, _ in step}) for step in shown]
    assert names == [["clarify"], ["plan"], ["search"], ["synthesize"]], names
    # The fan-out: one task per sub-query (2 per source, 2 sources), in one superstep.
    assert len(shown[2]) == 4 and all(status == "ok" for _, status in shown[2])
    # A superstep's row opens the state it wrote.
    fan_out = timeline["supersteps"][2]["step"]
    page.click(f'#timeline .step[data-step="{fan_out}"] .step-head')
    page.wait_for_selector("#timeline .step.selected")
    page.wait_for_selector('#state-diff li[data-path^="hits"]')
    page.wait_for_selector('#live .message[data-node="synthesize"]')
    page.evaluate("window.scrollTo(0, 0)")
    shoot("timeline", whole=False)


def test_a_failed_task_shows_its_error(page: Page, live: Live, shoot: Shoot) -> None:
    thread_id, run_id = _start(live, "failing", {"query": "anything"})
    assert _join(live, thread_id, run_id)["status"] == "error"
    task = _timeline(live, run_id)["supersteps"][-1]["tasks"][0]
    assert task["name"] == "fetch" and task["status"] == "error"
    page.goto(f"{live.url}/ui/#/threads/{thread_id}/runs/{run_id}")
    error = page.wait_for_selector('#timeline .failure[data-task="fetch"]')
    assert error is not None and UNREACHABLE in error.inner_text()
    assert page.get_attribute('#timeline .bar[data-task="fetch"]', "data-status") == "error"
    if task["retries"]:
        assert f"↻{task['retries']}" in page.inner_text('#timeline .step:has(.bar[data-task="fetch"])')
    assert page.inner_text("#run-status") == "error"
    shoot("failed")
    # The overview lists it among the errors, linking to the run.
    page.goto(f"{live.url}/ui/#/")
    page.click(f'#errors li[data-run="{run_id}"] a')
    page.wait_for_selector('#timeline .failure[data-task="fetch"]')


def test_the_rate_limits_view_shows_each_key_live(page: Page, live: Live, shoot: Shoot) -> None:
    page.goto(f"{live.url}/ui/#/limits")
    page.wait_for_selector('#limits tr[data-key="wikipedia"]')
    with live.http() as http:
        limits = http.get("/inspector/limits").json()
    assert sorted(row["key"] for row in limits["limits"]) == ["arxiv", "wikipedia"]
    shown = page.eval_on_selector_all("#limits tr[data-key]", "rows => rows.map(r => r.dataset.key)")
    assert sorted(shown) == ["arxiv", "wikipedia"]
    for row in limits["limits"]:
        cells = f'#limits tr[data-key="{row["key"]}"]'
        assert page.inner_text(f"{cells} .budget") == row["budget"]
        assert f"{row['rate']:g} requests" in page.inner_text(cells)
    # Research runs take grants from both keys: the view's figures move.
    runs = [_start(live, "research_assistant", {"query": f"topic {i} in recent research"}) for i in range(3)]
    for run in runs:
        assert _join(live, *run)["status"] == "success"
    page.wait_for_function(
        "Number(document.querySelector('#limits tr[data-key=\"wikipedia\"] .granted')?.textContent) > 0"
    )
    shoot("limits")


@pytest.fixture
def two_replicas(mockapi: str, postgres_url: str, tmp_path: pathlib.Path) -> Iterator[list[Live]]:
    """Two replicas on one PostgreSQL database, each with its own HTTP listener."""
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        db = pool.submit(create_database, postgres_url).result()
        pool.submit(upgrade, db).result()
    config = write_config(tmp_path)
    env = {"STEPSTREAM_MOCKAPI_URL": mockapi}
    servers: list[Live] = []
    try:
        for name in ("replica-a", "replica-b"):
            port = free_port()
            args = ("--no-migrate", "--replica", name, "--http-port", str(port))
            process = ServerProcess(db, config, *args, env=env, cwd=tmp_path)
            process.start()
            url = f"http://127.0.0.1:{port}"
            servers.append(Live(url, process))
            httpx.get(url + "/ok", timeout=10).raise_for_status()
        yield servers
    finally:
        for server in servers:
            server.process.stop()


def test_a_replica_killed_mid_run_shows_the_takeover(
    page: Page, two_replicas: list[Live], shoot: Shoot
) -> None:
    first, _ = two_replicas
    thread_id, run_id = _start(first, "steps", {"count": 6, "pace": 1.0})
    # Kill whichever replica runs it, once it is under way; watch from the other.
    deadline = time.monotonic() + 30
    runner = None
    while runner is None and time.monotonic() < deadline:
        timeline = _timeline(first, run_id)
        if timeline["run"]["replica"] and timeline["supersteps"]:
            runner = timeline["run"]["replica"]
        time.sleep(0.2)
    assert runner in ("replica-a", "replica-b"), runner
    victim, survivor = two_replicas if runner == "replica-a" else two_replicas[::-1]
    page.goto(f"{survivor.url}/ui/#/threads/{thread_id}/runs/{run_id}")
    page.wait_for_selector("#timeline .step")
    victim.process.kill()

    page.wait_for_selector("#takeovers .takeover")
    takeover = page.inner_text("#takeovers .takeover")
    assert runner in takeover and ("replica-b" if runner == "replica-a" else "replica-a") in takeover
    page.wait_for_function("document.querySelector('#run-status')?.textContent === 'success'", timeout=60_000)
    shoot("takeover")
    timeline = _timeline(survivor, run_id)
    assert [(t["from_replica"], t["to_replica"]) for t in timeline["takeovers"]] == [
        (runner, "replica-b" if runner == "replica-a" else "replica-a")
    ]
    assert timeline["run"]["replica"] != runner
