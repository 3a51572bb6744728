"""The inspector's routes on a live server with authentication on (SQLite): config is open,
the overview (once and live) follows runs as they execute and fail, each tenant sees its own
runs only, and bad requests get the right status."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import httpx
import pytest

from tests.server.http.door import Door, door
from tests.server.http.inspector_support import INSPECTOR_JSON, graph, join, overview_until, start_run

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    workdir = pathlib.Path(tmp_path_factory.mktemp("inspector"))
    with door(workdir, "--inspector-heartbeat-seconds", "0.5", config=INSPECTOR_JSON) as server:
        yield server


def test_config_is_open_and_says_auth_is_required(live: Door) -> None:
    answer = httpx.get(live.url + "/inspector/config", timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body["auth_required"] is True
    assert isinstance(body["replica"], str) and body["replica"]
    assert body["jaeger_ui_url"] is None


def test_data_routes_need_credentials(live: Door) -> None:
    for path in ("/inspector/overview", "/inspector/overview/stream"):
        answer = httpx.get(live.url + path, timeout=10)
        assert answer.status_code == 401, path
        bad = httpx.get(live.url + path, headers={"x-api-key": "sk_nobody"}, timeout=10)
        assert bad.status_code == 401, path


def test_overview_follows_runs_as_they_execute_and_fail(live: Door) -> None:
    with live.http("alice") as alice, live.http("bob") as bob:
        before = alice.get("/inspector/overview").json()
        assert [r["alive"] for r in before["replicas"]] == [True]
        runs = [start_run(alice, "slow", {"steps": 20, "delay": 0.1}) for _ in range(3)]
        # The replica's own figures come from its heartbeat row, written every half second.
        busy = overview_until(
            alice, lambda o: graph(o, "slow")["running"] == 3 and o["replicas"][0]["running"] == 3
        )
        assert busy["running"] >= 3 and busy["replicas"][0]["leases"] >= 1
        # Bob's runs are his: he sees the replica, not alice's graphs.
        assert graph(bob.get("/inspector/overview").json(), "slow")["running"] == 0
        failed = start_run(alice, "boom", {})
        join(alice, failed)
        for run in runs:
            join(alice, run)
        done = overview_until(
            alice,
            lambda o: graph(o, "slow")["running"] == 0 and graph(o, "boom")["errors_last_minute"] >= 1,
        )
        assert graph(done, "slow")["finished_last_minute"] >= 3
        assert done["runs_per_second"] > 0
        error = next(e for e in done["errors"] if e["run_id"] == failed["run_id"])
        assert error["thread_id"] == failed["thread_id"]
        assert error["graph_id"] == "boom" and "boom" in error["error"] and "ValueError" in error["error"]
        assert all(e["run_id"] != failed["run_id"] for e in bob.get("/inspector/overview").json()["errors"])
        # Busiest first: nothing runs now, so the graphs are ordered by what finished.
        loads = [g["finished_last_minute"] for g in done["graphs"] if g["running"] + g["queued"] == 0]
        assert loads == sorted(loads, reverse=True)


def test_unknown_inspector_routes_and_methods(live: Door) -> None:
    with live.http() as http:
        assert http.get("/inspector/nothing").status_code == 404
        assert http.post("/inspector/overview", json={}).status_code == 405
