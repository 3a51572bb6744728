"""grpcurl (pinned, `go install`) explores a live server through reflection: no stubs needed."""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import pytest

from tests.clients.programs import toolchain

pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def grpcurl() -> pathlib.Path:
    try:
        return toolchain.grpcurl()
    except toolchain.ToolchainMissing as missing:
        pytest.fail(str(missing))


def call(
    grpcurl: pathlib.Path, address: str, *args: str, data: Any = None
) -> subprocess.CompletedProcess[str]:
    cmd = [str(grpcurl), "-plaintext"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    return subprocess.run([*cmd, address, *args], capture_output=True, text=True, timeout=60, check=False)


def test_services_are_listed_through_reflection(grpcurl: pathlib.Path, server_address: str) -> None:
    listed = call(grpcurl, server_address, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    expected = {"stepstream.v1.GraphService", "stepstream.v1.RunService", "stepstream.v1.SessionService"}
    assert expected | {"grpc.health.v1.Health"} <= services
    described = call(grpcurl, server_address, "describe", "stepstream.v1.RunService")
    assert described.returncode == 0, described.stderr
    join = "rpc JoinRun ( .stepstream.v1.JoinRunRequest ) returns ( stream .stepstream.v1.JoinRunResponse );"
    assert join in described.stdout


def test_methods_are_called_with_json(grpcurl: pathlib.Path, server_address: str) -> None:
    graphs = call(grpcurl, server_address, "stepstream.v1.GraphService/ListGraphs", data={})
    assert graphs.returncode == 0, graphs.stderr
    linear = next(g for g in json.loads(graphs.stdout)["graphs"] if g["graph_id"] == "linear")
    assert linear["nodes"] == ["a", "b", "c"]

    start = {"graph_id": "linear", "input_json": json.dumps({"x": 1})}
    started = call(grpcurl, server_address, "stepstream.v1.RunService/StartRun", data=start)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run"]["run_id"]
    wait = {"run_id": run_id, "timeout_seconds": 30}
    waited = call(grpcurl, server_address, "stepstream.v1.RunService/WaitRun", data=wait)
    assert waited.returncode == 0, waited.stderr
    run = json.loads(waited.stdout)["run"]
    assert run["status"] == "RUN_STATUS_SUCCEEDED"
    assert json.loads(run["values_json"]) == {"x": 4, "log": ["a", "b", "c"]}

    # A server stream prints one JSON message per response; seqs run 1..last_seq.
    joined = call(grpcurl, server_address, "stepstream.v1.RunService/JoinRun", data={"run_id": run_id})
    assert joined.returncode == 0, joined.stderr
    decoder, text, seqs = json.JSONDecoder(), joined.stdout.strip(), []
    while text:
        message, end = decoder.raw_decode(text)
        seqs += [int(event["seq"]) for event in message["events"]]
        text = text[end:].strip()
    assert seqs == list(range(1, int(run["last_seq"]) + 1))


def test_bad_input_shows_the_status_and_the_field(grpcurl: pathlib.Path, server_address: str) -> None:
    bad = {"graph_id": "linear", "input_json": "{x"}
    refused = call(grpcurl, server_address, "stepstream.v1.RunService/StartRun", data=bad)
    assert refused.returncode != 0
    assert "Code: InvalidArgument" in refused.stderr
    assert "google.rpc.BadRequest" in refused.stderr and '"field": "input_json"' in refused.stderr
