"""Graph nodes take tokens from the server's limiter through the run's context."""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from stepstream.server.process import wait_serving
from stepstream.v1 import runs_pb2
from tests.rpc import Api
from tests.support import ROOT, ServerProcess

pytestmark = pytest.mark.process

LIMITS = ROOT / "tests" / "graphs" / "limits.toml"


def _most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


def test_rate_limited_nodes_share_the_servers_budget(tmp_path: pathlib.Path) -> None:
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "--limits", str(LIMITS))
    api = Api(server.start())
    try:
        # Three runs at once, 10 calls each: one budget of 20/s burst 1 for all of them.
        runs = [api.start("limited", {"n": 10}) for _ in range(3)]
        granted: list[float] = []
        for run in runs:
            done = api.wait(run.run_id, timeout=60)
            assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED, done.error_message
            granted += json.loads(done.values_json)["granted_at"]
        assert len(granted) == 30
        for window in (0.25, 0.5, 1.0):
            # rate x window + burst; +1 because each time is read after its grant, so scheduling
            # delay can bring two recorded times closer than the grants were.
            assert _most_in_any_window(granted, window) <= 20 * window + 1 + 1
    finally:
        api.close()
        server.stop()


def test_without_a_limiter_a_rate_limited_node_fails_its_run_clearly(api: Api) -> None:
    events = api.stream("limited", {"n": 1})
    assert events[-1].WhichOneof("kind") == "run_failed"
    assert "no rate limiter is installed" in events[-1].run_failed.error_message


def test_a_bad_limits_file_is_refused_at_start(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "limits.toml"
    bad.write_text('[limits]\napi = "fast please"\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepstream.cli.main",
            "serve",
            "--port",
            "0",
            "--limits",
            str(bad),
            "--db",
            f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "api" in proc.stderr


def test_nodes_take_tokens_from_the_sidecar(tmp_path: pathlib.Path) -> None:
    # Only the sidecar knows the limits: the run can pace itself only by asking it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "stepstream.ratelimiter", "--config", str(LIMITS), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "--ratelimiter", f"127.0.0.1:{port}"
    )
    try:
        wait_serving(f"127.0.0.1:{port}")
        api = Api(server.start())
        try:
            runs = [api.start("limited", {"n": 8}) for _ in range(2)]
            granted: list[float] = []
            for run in runs:
                done = api.wait(run.run_id, timeout=60)
                assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED, done.error_message
                granted += json.loads(done.values_json)["granted_at"]
            assert len(granted) == 16
            for window in (0.25, 0.5):
                assert _most_in_any_window(granted, window) <= 20 * window + 1 + 1
        finally:
            api.close()
    finally:
        server.stop()
        sidecar.send_signal(signal.SIGTERM)
        sidecar.wait(30)
