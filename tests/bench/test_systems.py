"""The stepstream HTTP rows: `serve --http-port` deployed as the bench deploys it, driven by the
langgraph-sdk load client the peers are driven by (bench/drivers/sdk_peer.py, in the pinned
langgraph-server venv under build/peers, built on first use).

The figures are not checked, only that runs were made through the SDK and none failed.
"""

from __future__ import annotations

import asyncio
import os
import pathlib

import httpx
import pytest

from bench.harness import Worker
from bench.systems import SYSTEMS, Resources, StepstreamSystem

pytestmark = pytest.mark.process

HTTP_ROWS = [s for s in SYSTEMS if isinstance(s, StepstreamSystem) and s.http]


def test_every_http_row_needs_the_sdk_venv_and_no_grpc_client() -> None:
    assert {s.key for s in HTTP_ROWS} >= {"stepstream-http-sqlite", "stepstream-http-pg"}
    assert all(s.venvs == ("langgraph-server",) for s in HTTP_ROWS)


def test_the_sqlite_http_row_serves_a_run_to_langgraph_sdk(tmp_path: pathlib.Path) -> None:
    system = next(s for s in HTTP_ROWS if s.key == "stepstream-http-sqlite")
    # The linear graph calls no API: the mock APIs' address is never dialled.
    res = Resources(tmp_path, "http://127.0.0.1:9")

    async def run() -> tuple[dict[str, object], dict[str, object], list[int]]:
        async with system.deploy(res, 1) as deployment:
            assert deployment.driver[-1] == "bench.drivers.sdk_peer"
            url = deployment.start["url"]
            assert isinstance(url, str) and url.startswith("http://127.0.0.1:")
            async with httpx.AsyncClient() as http:
                info = (await http.get(f"{url}/assistants/linear")).json()
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            async with Worker(deployment.driver, env, tmp_path / "client.log") as worker:
                await worker.request({"op": "start", **deployment.start}, timeout=120)
                cell = {
                    "op": "cell",
                    "graph": "linear",
                    "input": {"x": 0},
                    "concurrency": 2,
                    "duration": 0.3,
                    "warmup": 0.1,
                    "max_warmup": 10.0,
                    "max_window": 5.0,
                    "server_pids": deployment.serving_pids(),
                }
                result = await worker.request(cell, timeout=120)
            return info, result, deployment.serving_pids()

    try:
        info, result, pids = asyncio.run(run())
    finally:
        res.close()
    assert info["graph_id"] == "linear"
    assert pids
    # Each run was checked by the driver: three `updates` events over SSE, no `error` event.
    assert result["errors"] == 0, result
    assert isinstance(result["runs"], int) and result["runs"] >= 2
    assert isinstance(result["server_cpu_ms_per_run"], float) and result["server_cpu_ms_per_run"] > 0
