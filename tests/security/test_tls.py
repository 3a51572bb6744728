"""TLS for clients (server certificate, optional client certificates), plaintext refused when TLS
is on, and mTLS between a server and its rate-limiter sidecar."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import duration_pb2

from stepstream.client import StepstreamClient, UnavailableError
from stepstream.security.tls import channel_credentials, is_loopback, sidecar_credentials
from stepstream.v1 import graphs_pb2, graphs_pb2_grpc, ratelimit_pb2, ratelimit_pb2_grpc, runs_pb2
from tests.ratelimiter.conftest import Sidecar
from tests.rpc import Api
from tests.security.conftest import Tenants
from tests.support import ROOT, ServerProcess

pytestmark = pytest.mark.process

LIMITS = ROOT / "tests" / "graphs" / "limits.toml"


def _tls_args(certs: pathlib.Path, *, client_ca: bool) -> list[str]:
    args = ["--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key")]
    return [*args, "--tls-client-ca", str(certs / "ca.crt")] if client_ca else args


def _server(
    tmp: pathlib.Path, certs: pathlib.Path, *, client_ca: bool, extra: tuple[str, ...] = ()
) -> ServerProcess:
    probe = channel_credentials(
        str(certs / "ca.crt"),
        str(certs / "client.crt") if client_ca else None,
        str(certs / "client.key") if client_ca else None,
    )
    return ServerProcess(
        f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}",
        *_tls_args(certs, client_ca=client_ca),
        *extra,
        credentials=probe,
    )


@pytest.fixture(scope="module")
def tls_server(certs: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _server(tmp_path_factory.mktemp("tls"), certs, client_ca=False)
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(certs: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _server(tmp_path_factory.mktemp("mtls"), certs, client_ca=True)
    yield server.start()
    server.stop()


def _list_graphs(address: str, credentials: grpc.ChannelCredentials | None) -> list[str]:
    channel = (
        grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials)
    )
    with channel:
        stub = graphs_pb2_grpc.GraphServiceStub(channel)
        return [g.graph_id for g in stub.ListGraphs(graphs_pb2.ListGraphsRequest(), timeout=10).graphs]


def test_a_client_trusting_the_ca_runs_over_tls(tls_server: str, certs: pathlib.Path) -> None:
    api = Api(tls_server, credentials=channel_credentials(str(certs / "ca.crt")))
    try:
        assert api.stream("linear", {"x": 1})[-1].WhichOneof("kind") == "run_finished"
    finally:
        api.close()


def test_plaintext_is_refused_when_tls_is_on(tls_server: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _list_graphs(tls_server, None)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_servers_ca_is_refused(
    tls_server: str, other_ca_certs: pathlib.Path
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _list_graphs(tls_server, channel_credentials(str(other_ca_certs / "ca.crt")))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_admits_only_client_certificates_of_its_ca(
    mtls_server: str, certs: pathlib.Path, other_ca_certs: pathlib.Path
) -> None:
    ca = str(certs / "ca.crt")
    assert "linear" in _list_graphs(
        mtls_server, channel_credentials(ca, str(certs / "client.crt"), str(certs / "client.key"))
    )
    for credentials in (
        channel_credentials(ca),  # no client certificate
        channel_credentials(ca, str(other_ca_certs / "client.crt"), str(other_ca_certs / "client.key")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            _list_graphs(mtls_server, credentials)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        _list_graphs(mtls_server, None)


async def test_the_python_sdk_speaks_mtls(mtls_server: str, certs: pathlib.Path) -> None:
    async with StepstreamClient(
        mtls_server,
        tls_ca_file=str(certs / "ca.crt"),
        tls_cert_file=str(certs / "client.crt"),
        tls_key_file=str(certs / "client.key"),
        timeout=10,
    ) as client:
        run = await client.runs.start("linear", {"x": 1})
        assert (await client.runs.wait(run.run_id)).status.name == "SUCCEEDED"
    async with StepstreamClient(mtls_server, tls_ca_file=str(certs / "ca.crt"), timeout=10) as client:
        with pytest.raises(UnavailableError):
            await client.graphs.list()


def test_the_cli_speaks_tls(tls_server: str, certs: pathlib.Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepstream.cli.main",
            "graphs",
            "-a",
            tls_server,
            "--tls-ca",
            str(certs / "ca.crt"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "linear" in result.stdout


def test_server_and_sidecar_talk_over_mtls(
    certs: pathlib.Path, tenants: Tenants, tmp_path: pathlib.Path
) -> None:
    """The sidecar requires client certificates and authenticates the server by its certificate's
    name; the server reaches it with its own certificate. A caller without one is refused."""
    sidecar = Sidecar(
        LIMITS,
        [
            *_tls_args(certs, client_ca=True),
            "--auth-file",
            str(tenants.principals_file),
        ],
    )
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "--ratelimiter",
        sidecar.target,
        "--ratelimiter-tls-ca",
        str(certs / "ca.crt"),
        "--ratelimiter-tls-cert",
        str(certs / "stepstream-server.crt"),
        "--ratelimiter-tls-key",
        str(certs / "stepstream-server.key"),
    )
    api = Api(server.start())
    try:
        run = api.start("limited", {"n": 5})
        done = api.wait(run.run_id, timeout=60)
        assert done.status == runs_pb2.RUN_STATUS_SUCCEEDED, done.error_message
        assert len(json.loads(done.values_json)["granted_at"]) == 5
        request = ratelimit_pb2.AcquireRequest(
            key="test-api", cost=1, max_wait=duration_pb2.Duration(seconds=5)
        )
        # The client certificate alone names a principal ("stepstream-server" has the limiter role);
        # one signed by the CA but unknown to the principals file has no credentials.
        named = channel_credentials(
            str(certs / "ca.crt"), str(certs / "stepstream-server.crt"), str(certs / "stepstream-server.key")
        )
        with grpc.secure_channel(sidecar.target, named) as channel:
            reply = ratelimit_pb2_grpc.RateLimiterServiceStub(channel).Acquire(request, timeout=10)
            assert reply.outcome == ratelimit_pb2.ACQUIRE_OUTCOME_GRANTED
        unnamed = channel_credentials(
            str(certs / "ca.crt"), str(certs / "client.crt"), str(certs / "client.key")
        )
        with grpc.secure_channel(sidecar.target, unnamed) as channel, pytest.raises(grpc.RpcError) as err:
            ratelimit_pb2_grpc.RateLimiterServiceStub(channel).Acquire(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(sidecar.target) as channel, pytest.raises(grpc.RpcError) as err:
            ratelimit_pb2_grpc.RateLimiterServiceStub(channel).Acquire(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        api.close()
        server.stop()
        sidecar.close()


def test_a_sidecar_off_loopback_needs_tls() -> None:
    assert sidecar_credentials("127.0.0.1:50061", None, None, None) is None
    assert sidecar_credentials("localhost:50061", None, None, None) is None
    with pytest.raises(ValueError, match="mTLS"):
        sidecar_credentials("ratelimiter.internal:50061", None, None, None)
    with pytest.raises(ValueError, match="mTLS"):
        sidecar_credentials("10.1.2.3:50061", None, None, None)
    assert is_loopback("::1") and is_loopback("[::1]") and not is_loopback("0.0.0.0")


@pytest.mark.parametrize("command", ["serve", "ratelimiter"])
def test_an_exposed_host_without_authentication_is_refused_at_start(
    command: str, tmp_path: pathlib.Path
) -> None:
    args = [sys.executable, "-m", "stepstream.cli.main", command, "--host", "0.0.0.0", "--port", "0"]
    if command == "serve":
        args += ["--db", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"]
    else:
        args += ["--config", str(LIMITS)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "without authentication" in result.stderr
