"""Two replicas on one PostgreSQL database both appear in either one's overview (from their
heartbeat rows); one killed with SIGKILL turns not alive after its missed beats, and the
timeline of the run it held, read from the other, shows the takeover."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest

from bench.peers.servers import free_port
from stepstream.server.process import ServerProcess
from tests.pgserver import create_database
from tests.server.http.inspector_support import INSPECTOR_JSON, join, overview_until, start_run

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]


def _done_tasks(timeline: dict[str, Any]) -> int:
    return sum(t["status"] == "ok" for s in timeline["supersteps"] for t in s["tasks"])


def _replica(port: int, db: str, name: str, *extra: str) -> ServerProcess:
    args = ("--http-port", str(port), "--replica", name, "--inspector-heartbeat-seconds", "0.5", *extra)
    return ServerProcess(db, INSPECTOR_JSON, *args)


def test_two_replicas_appear_and_a_killed_one_turns_not_alive(postgres_url: str) -> None:
    db = create_database(postgres_url)
    ports = [free_port(), free_port()]
    # One after the other: the first migrates, the second finds the schema current.
    with _replica(ports[0], db, "inspect-a"), _replica(ports[1], db, "inspect-b", "--no-migrate") as b:
        a_http = httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30)
        b_http = httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", timeout=30)
        with a_http, b_http:
            for http in (a_http, b_http):
                names = {r["name"]: r["alive"] for r in http.get("/inspector/overview").json()["replicas"]}
                assert names == {"inspect-a": True, "inspect-b": True}
            assert b_http.get("/inspector/config").json()["replica"] == "inspect-b"
            # A run that starts on b (it has free slots, so it executes where it was started).
            run = start_run(b_http, "slow", {"steps": 12, "delay": 0.25})
            path = f"/inspector/runs/{run['run_id']}/timeline"
            while _done_tasks(b_http.get(path).json()) < 2:
                time.sleep(0.05)
            b.signal(signal.SIGKILL)
            b.wait()

            def b_dead(o: dict[str, object]) -> bool:
                alive = {r["name"]: r["alive"] for r in o["replicas"]}  # type: ignore[attr-defined]
                return alive == {"inspect-a": True, "inspect-b": False}

            dead = overview_until(a_http, b_dead)
            b_row = next(r for r in dead["replicas"] if r["name"] == "inspect-b")
            assert b_row["draining"] is False  # it died; it did not drain
            join(a_http, run)
            timeline = a_http.get(path).json()
            assert timeline["run"]["status"] == "success" and timeline["run"]["replica"] == "inspect-a"
            moves = [(t["from_replica"], t["to_replica"]) for t in timeline["takeovers"]]
            assert moves == [("inspect-b", "inspect-a")]
            replicas = [t["replica"] for s in timeline["supersteps"] for t in s["tasks"]]
            assert replicas[0] == "inspect-b" and replicas[-1] == "inspect-a"
