"""Outside gRPC tools find and call the API by reflection alone (server/api/reflection.py).

`buf curl --reflect-protocol grpc-v1` speaks grpc.reflection.v1 and nothing else; ghz asks
for the method's own symbol (`stepstream.v1.RunService.StreamRun`), which the protobuf
runtime's pool cannot find by itself. Both tools are pinned in protos/ (toolchain.py).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_pb2_grpc

from stepstream.v1 import grpc_reflection_v1_pb2 as v1_pb2
from stepstream.v1 import grpc_reflection_v1_pb2_grpc as v1_pb2_grpc
from stepstream.v1 import runs_pb2, runs_pb2_grpc
from tests.support import ServerProcess

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "protos"))
import toolchain  # noqa: E402

# A first run builds ghz with `go install` (minutes); later runs take it from the cache.
pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]

SERVICES = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "stepstream.v1.AssistantService",
    "stepstream.v1.GraphService",
    "stepstream.v1.InspectorService",
    "stepstream.v1.RunService",
    "stepstream.v1.SessionService",
    "stepstream.v1.StoreService",
}
STREAM_RUN = "stepstream.v1.RunService/StreamRun"


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("reflection") / "stepstream.db"
    with ServerProcess(f"sqlite+aiosqlite:///{db}") as server:
        yield server.address


def installed(install: Callable[[], pathlib.Path]) -> pathlib.Path:
    try:
        return install()
    except toolchain.ToolchainMissing as missing:
        pytest.fail(str(missing))


def buf_curl_v1(*args: str) -> subprocess.CompletedProcess[str]:
    """`buf curl` over plaintext HTTP/2, allowed to use grpc.reflection.v1 only."""
    buf = installed(toolchain.buf)
    cmd = [str(buf), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=False)


def json_messages(text: str) -> list[Any]:
    """The JSON documents a streaming call prints one after another."""
    decoder, text, messages = json.JSONDecoder(), text.strip(), []
    while text:
        message, end = decoder.raw_decode(text)
        messages.append(message)
        text = text[end:].strip()
    return messages


def succeeded_runs(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = runs_pb2_grpc.RunServiceStub(channel)
        request = runs_pb2.ListRunsRequest(statuses=[runs_pb2.RUN_STATUS_SUCCEEDED], page_size=1000)
        return len(stub.ListRuns(request, timeout=30).runs)


def test_a_v1_only_client_lists_the_services_and_streams_a_run(address: str) -> None:
    listed = buf_curl_v1("--list-services", f"http://{address}")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= SERVICES

    start = {"run": {"graph_id": "linear", "input_json": json.dumps({"x": 1})}}
    streamed = buf_curl_v1("--data", json.dumps(start), f"http://{address}/{STREAM_RUN}")
    assert streamed.returncode == 0, streamed.stderr
    events = [event for message in json_messages(streamed.stdout) for event in message["events"]]
    assert [int(event["seq"]) for event in events] == list(range(1, len(events) + 1))
    assert "runQueued" in events[0]
    assert json.loads(events[-1]["runFinished"]["valuesJson"]) == {"x": 4, "log": ["a", "b", "c"]}


def test_ghz_calls_stream_run_by_reflection(address: str) -> None:
    ghz = installed(toolchain.ghz)
    before = succeeded_runs(address)
    data = json.dumps({"run": {"graph_id": "linear", "input_json": json.dumps({"x": 2})}})
    cmd = [str(ghz), "--insecure", "--call", STREAM_RUN, "-d", data, "-n", "5", "-c", "5", "-O", "json"]
    result = subprocess.run([*cmd, address], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 5
    assert report["statusCodeDistribution"] == {"OK": 5}, report["errorDistribution"]
    # ghz reads each stream to its end, so the five runs are done, not merely started.
    assert succeeded_runs(address) == before + 5


Reflect = Callable[[str, list[dict[str, str]]], list[Any]]


def reflect_v1(address: str, requests: list[dict[str, str]]) -> list[Any]:
    with grpc.insecure_channel(address) as channel:
        stub = v1_pb2_grpc.ServerReflectionStub(channel)
        messages = iter([v1_pb2.ServerReflectionRequest(**fields) for fields in requests])
        return list(stub.ServerReflectionInfo(messages, timeout=30))


def reflect_v1alpha(address: str, requests: list[dict[str, str]]) -> list[Any]:
    with grpc.insecure_channel(address) as channel:
        stub = v1alpha_pb2_grpc.ServerReflectionStub(channel)
        messages = iter([v1alpha_pb2.ServerReflectionRequest(**fields) for fields in requests])
        return list(stub.ServerReflectionInfo(messages, timeout=30))


def file_names(response: Any) -> list[str]:
    protos = response.file_descriptor_response.file_descriptor_proto
    return [descriptor_pb2.FileDescriptorProto.FromString(proto).name for proto in protos]


@pytest.mark.parametrize("reflect", [reflect_v1, reflect_v1alpha], ids=["v1", "v1alpha"])
def test_both_versions_find_a_method_and_refuse_an_unknown_symbol(address: str, reflect: Reflect) -> None:
    method, missing, listing = reflect(
        address,
        [
            {"file_containing_symbol": "stepstream.v1.RunService.StreamRun"},
            {"file_containing_symbol": "stepstream.v1.RunService.NoSuchMethod"},
            {"list_services": ""},
        ],
    )
    # The file first, then its imports, so a client can build the method's messages.
    assert file_names(method)[0] == "stepstream/v1/runs.proto"
    assert {"stepstream/v1/events.proto", "stepstream/v1/common.proto"} <= set(file_names(method))
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert missing.original_request.file_containing_symbol == "stepstream.v1.RunService.NoSuchMethod"
    # The stream answers on after a miss.
    assert {service.name for service in listing.list_services_response.service} >= SERVICES


def test_v1_describes_itself(address: str) -> None:
    (response,) = reflect_v1(address, [{"file_containing_symbol": "grpc.reflection.v1.ServerReflection"}])
    (proto,) = response.file_descriptor_response.file_descriptor_proto
    described = descriptor_pb2.FileDescriptorProto.FromString(proto)
    assert described.package == "grpc.reflection.v1"
    assert [method.name for method in described.service[0].method] == ["ServerReflectionInfo"]
