"""The inspector's routes on a live server with authentication on (SQLite): config is open,
the overview (once and live) follows runs as they execute and fail, each tenant sees its own
runs only, and bad requests get the right status."""

from __future__ import annotations

import pathlib
import signal
import time
from collections.abc import Iterator
from typing import Any

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
        runs = [start_run(alice, "slow", {"steps": 40, "delay": 0.1}) for _ in range(3)]

        # The replica's own figures come from its heartbeat row, written every half second (its
        # leases as of its last renewal, each second).
        def busy(o: dict[str, Any]) -> bool:
            replica = o["replicas"][0]
            return graph(o, "slow")["running"] == 3 and replica["running"] == 3 and replica["leases"] == 3

        assert overview_until(alice, busy)["running"] >= 3
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


def _timeline(http: httpx.Client, run: dict[str, Any]) -> dict[str, Any]:
    answer = http.get(f"/inspector/runs/{run['run_id']}/timeline")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_timeline_of_a_fan_out_lists_its_tasks_per_superstep(live: Door) -> None:
    with live.http() as http:
        run = start_run(http, "fanfail", {"n": 3, "fail": -1, "delay": 0.05})
        join(http, run)
        timeline = _timeline(http, run)
        replica = http.get("/inspector/config").json()["replica"]
        assert timeline["run"]["run_id"] == run["run_id"] and timeline["run"]["status"] == "success"
        assert timeline["run"]["replica"] == replica and "trace_id" in timeline["run"]
        names = [[t["name"] for t in s["tasks"]] for s in timeline["supersteps"] if s["tasks"]]
        assert names == [["prepare"], ["work", "work", "work"], ["total"]]
        steps = [s for s in timeline["supersteps"] if s["tasks"]]
        assert [s["step"] for s in steps] == sorted(s["step"] for s in steps)
        for step in steps:
            assert step["checkpoint_id"] and step["ended_at"] >= step["started_at"]
            for task in step["tasks"]:
                assert (task["status"], task["error"], task["retries"], task["replica"]) == (
                    "ok",
                    None,
                    0,
                    replica,
                )
                assert task["ended_at"] >= task["started_at"] and task["path"] == []
        assert timeline["takeovers"] == [] and timeline["interrupts"] == []


def test_timeline_shows_the_failed_task_and_its_error(live: Door) -> None:
    with live.http() as http:
        run = start_run(http, "fanfail", {"n": 4, "fail": 2, "delay": 0.02})
        join(http, run)
        timeline = _timeline(http, run)
        assert timeline["run"]["status"] == "error"
        (work,) = [s for s in timeline["supersteps"] if any(t["name"] == "work" for t in s["tasks"])]
        assert len(work["tasks"]) == 4
        failed = [t for t in work["tasks"] if t["status"] == "error"]
        assert [t["error"] for t in failed] == ["RuntimeError: task 2 failed on purpose"]
        assert all(t["status"] in ("ok", "interrupted") for t in work["tasks"] if t not in failed)
        assert work["checkpoint_id"] is None  # the superstep never completed


def test_timeline_lists_interrupts(live: Door) -> None:
    with live.http() as http:
        run = start_run(http, "ask", {"question": "proceed?"})
        join(http, run)
        timeline = _timeline(http, run)
        assert [(i["value"], bool(i["id"])) for i in timeline["interrupts"]] == [("proceed?", True)]
        (ask,) = [t for s in timeline["supersteps"] for t in s["tasks"]]
        assert ask["name"] == "ask" and ask["status"] == "interrupted"
        assert timeline["interrupts"][0]["step"] == next(
            s["step"] for s in timeline["supersteps"] if s["tasks"]
        )


def test_timeline_is_the_tenants_own_and_bad_ids_are_refused(live: Door) -> None:
    with live.http("alice") as alice, live.http("bob") as bob, live.http("reader") as reader:
        run = start_run(alice, "boom", {})
        join(alice, run)
        path = f"/inspector/runs/{run['run_id']}/timeline"
        assert reader.get(path).status_code == 200  # the reader role may look
        hidden = bob.get(path)
        assert hidden.status_code == 404 and run["run_id"] in hidden.json()["detail"]
        assert alice.get("/inspector/runs/00000000-0000-4000-8000-000000000000/timeline").status_code == 404
        bad = alice.get("/inspector/runs/not%20an%20id/timeline")
        assert bad.status_code == 422 and "run id" in bad.json()["detail"]
        assert alice.get("/inspector/runs/" + "x" * 65 + "/timeline").status_code == 422
        assert httpx.get(live.url + path, timeout=10).status_code == 401


def test_a_draining_replica_says_so(tmp_path: pathlib.Path) -> None:
    args = ("--inspector-heartbeat-seconds", "0.2", "--grace", "20")
    with door(tmp_path, *args, config=INSPECTOR_JSON) as server, server.http() as http:
        # One superstep of 4 s: SIGTERM lets it reach its boundary, so the drain lasts seconds.
        start_run(http, "slow", {"steps": 1, "delay": 4.0})
        overview_until(http, lambda o: o["replicas"][0]["running"] == 1)
        server.process.signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not http.get("/inspector/overview").json()["replicas"][0]["draining"]:
            assert time.monotonic() < deadline, "the replica never said it drains"
            time.sleep(0.1)
