"""/inspector/limits against a real sidecar: each key's shape, grants and waits counted by the
sidecar as runs take tokens, a reported 429's pause, the shared budget in force; a 503 that
says why when the sidecar is gone; and no limiter at all is an empty list."""

from __future__ import annotations

import asyncio
import datetime
import pathlib

import httpx
import pytest

from bench.peers.servers import free_port
from stepstream.ratelimiter.client import open_limiter
from stepstream.server.process import LimiterProcess, ServerProcess
from tests.server.http.inspector_support import INSPECTOR_JSON, join, start_run
from tests.support import ROOT

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

LIMITS = ROOT / "tests" / "graphs" / "limits.toml"


async def _report_throttled(address: str) -> None:
    limiter = open_limiter(address)
    try:
        await limiter.report_throttled("test-api", 30.0)
    finally:
        await limiter.close()


def test_limits_come_from_the_sidecar(tmp_path: pathlib.Path) -> None:
    sidecar = LimiterProcess("--config", str(LIMITS), "--host", "127.0.0.1")
    address = sidecar.start()
    port = free_port()
    db = f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}"
    try:
        with (
            ServerProcess(
                db, INSPECTOR_JSON, "--http-port", str(port), "--ratelimiter", address, cwd=tmp_path
            ),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        ):
            run = start_run(http, "limited", {"n": 10})
            join(http, run)
            body = http.get("/inspector/limits").json()
            assert (body["ratelimiter"], body["mode"]) == (address, "sidecar")
            (limit,) = body["limits"]
            shape = {k: limit[k] for k in ("key", "kind", "shape", "rate", "burst", "window_s", "budget")}
            assert shape == {
                "key": "test-api",
                "kind": "rate",
                "shape": "gcra",
                "rate": 20.0,
                "burst": 1,
                "window_s": 1.0,
                "budget": "shared",
            }
            # Burst 1: the ten calls of one superstep cannot all go at once, so most waited.
            assert limit["granted_total"] == 10 and 1 <= limit["waited_total"] <= 10
            assert limit["granted_per_s"] >= 0 and limit["queue"] == 0 and limit["paused_until"] is None
            asyncio.run(_report_throttled(address))
            paused = http.get("/inspector/limits").json()["limits"][0]["paused_until"]
            until = datetime.datetime.fromisoformat(paused)
            assert until > datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=20)
            sidecar.stop()
            gone = http.get("/inspector/limits")
            assert gone.status_code == 503
            assert "rate limiter" in gone.json()["detail"] and address in gone.json()["detail"]
            assert http.get("/ok").status_code == 200
    finally:
        sidecar.stop()


def test_no_limiter_is_an_empty_list(tmp_path: pathlib.Path) -> None:
    port = free_port()
    db = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    with ServerProcess(db, INSPECTOR_JSON, "--http-port", str(port), cwd=tmp_path):
        body = httpx.get(f"http://127.0.0.1:{port}/inspector/limits", timeout=30).json()
        assert body == {"ratelimiter": None, "mode": "none", "limits": []}


def test_the_in_process_limiter_describes_itself(tmp_path: pathlib.Path) -> None:
    port = free_port()
    db = f"sqlite+aiosqlite:///{tmp_path / 'local.db'}"
    args = ("--http-port", str(port), "--limits", str(LIMITS))
    with (
        ServerProcess(db, INSPECTOR_JSON, *args, cwd=tmp_path),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        join(http, start_run(http, "limited", {"n": 3}))
        body = http.get("/inspector/limits").json()
        assert (body["ratelimiter"], body["mode"]) == (None, "in-process")
        assert [(lim["key"], lim["granted_total"]) for lim in body["limits"]] == [("test-api", 3)]
