"""The sidecar answers grpc.reflection.v1 as the server does (ratelimiter/server.py wires
server/api/reflection.py): a client that speaks v1 only lists its services and calls it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "protos"))
import toolchain  # noqa: E402

pytestmark = pytest.mark.process

StartSidecar = Callable[..., Any]


def buf_curl_v1(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        buf = toolchain.buf()
    except toolchain.ToolchainMissing as missing:
        pytest.fail(str(missing))
    cmd = [str(buf), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=False)


def test_a_v1_only_client_lists_and_calls_the_sidecar(sidecars: StartSidecar) -> None:
    sidecar = sidecars('[limits]\narxiv = "1 per 3s"\n')
    listed = buf_curl_v1("--list-services", f"http://{sidecar.target}")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {
        "envoy.service.ratelimit.v3.RateLimitService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "stepstream.v1.RateLimiterService",
    }
    called = buf_curl_v1(
        "--data", "{}", f"http://{sidecar.target}/stepstream.v1.RateLimiterService/ListLimits"
    )
    assert called.returncode == 0, called.stderr
    assert [limit["key"] for limit in json.loads(called.stdout)["limits"]] == ["arxiv"]
