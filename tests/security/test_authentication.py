"""Every RPC needs credentials; bad ones answer UNAUTHENTICATED, missing roles PERMISSION_DENIED."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stepstream.server.api.auth import READER, WRITER, roles_by_method
from stepstream.v1 import (
    assistants_pb2,
    graphs_pb2,
    inspector_pb2,
    ratelimit_pb2,
    ratelimit_pb2_grpc,
    runs_pb2,
    sessions_pb2,
    store_pb2,
)
from tests.ratelimiter.conftest import Sidecar
from tests.rpc import Api
from tests.security.conftest import AUDIENCE, ISSUER, Tenants, api_key_api, bearer_api
from tests.support import ROOT

pytestmark = pytest.mark.process

LIMITS = ROOT / "tests" / "graphs" / "limits.toml"

SERVICES = [
    s
    for m in (graphs_pb2, sessions_pb2, runs_pb2, store_pb2, assistants_pb2, inspector_pb2)
    for s in m.DESCRIPTOR.services_by_name.values()
]
METHODS = [(f"/{s.full_name}/{m.name}", m) for s in SERVICES for m in s.methods]


def call_raw(channel: grpc.Channel, path: str, method: Any, metadata: tuple[tuple[str, str], ...]) -> None:
    """Call any method with an empty request, reading the whole answer."""
    if method.client_streaming and method.server_streaming:
        list(channel.stream_stream(path)(iter([b""]), metadata=metadata, timeout=10))
    elif method.server_streaming:
        list(channel.unary_stream(path)(b"", metadata=metadata, timeout=10))
    else:
        channel.unary_unary(path)(b"", metadata=metadata, timeout=10)


def test_the_method_table_covers_every_rpc_and_reads_are_open_to_readers() -> None:
    table = roles_by_method()
    assert set(table) == {path for path, _ in METHODS}
    assert table["/stepstream.v1.RunService/GetRun"] == {READER, WRITER}
    assert table["/stepstream.v1.RunService/StartRun"] == {WRITER}
    assert table["/stepstream.v1.SessionService/SessionStream"] == {WRITER}


@pytest.mark.parametrize(("path", "method"), METHODS, ids=[p for p, _ in METHODS])
@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("x-api-key", "sk_not-a-key-anyone-has"),),
        (("authorization", "Bearer not.a.jwt"),),
        (("authorization", "Basic YWxpY2U6c2VjcmV0"),),
    ],
    ids=["none", "unknown-api-key", "malformed-token", "basic-auth"],
)
def test_every_rpc_refuses_a_caller_without_valid_credentials(
    secured_server: str, path: str, method: Any, metadata: tuple[tuple[str, str], ...]
) -> None:
    with grpc.insecure_channel(secured_server) as channel, pytest.raises(grpc.RpcError) as err:
        call_raw(channel, path, method, metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value.details()
    assert err.value.details()


def test_health_and_reflection_stay_open(secured_server: str) -> None:
    with grpc.insecure_channel(secured_server) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {s.name for s in answers[0].list_services_response.service}
        assert "stepstream.v1.RunService" in names


def _token_cases(tenants: Tenants) -> dict[str, str]:
    return {
        "expired": tenants.token("alice", expires_in=-3600),
        "signed by a key not in the set": tenants.token("alice", key=tenants.rogue_key),
        "wrong audience": tenants.token("alice", aud="someone-else"),
        "wrong issuer": tenants.token("alice", iss="https://evil.example"),
        "no expiry": jwt.encode(
            {"sub": "alice", "roles": ["writer"], "iss": ISSUER, "aud": AUDIENCE},
            tenants.signing_key,
            algorithm="ES256",
            headers={"kid": "test-key-1"},
        ),
        "alg none": jwt.encode(
            {"sub": "alice", "roles": ["writer"], "iss": ISSUER, "aud": AUDIENCE, "exp": 4102444800},
            None,
            algorithm="none",
            headers={"kid": "test-key-1"},
        ),
        "unknown kid": jwt.encode(
            {"sub": "alice", "exp": 4102444800, "iss": ISSUER, "aud": AUDIENCE},
            tenants.signing_key,
            algorithm="ES256",
            headers={"kid": "other"},
        ),
        "tampered payload": _tamper(tenants.token("bob")),
        "no owner claim": tenants.token("alice", sub=None),
    }


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "alice"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "signed by a key not in the set",
        "wrong audience",
        "wrong issuer",
        "no expiry",
        "alg none",
        "unknown kid",
        "tampered payload",
        "no owner claim",
    ],
)
def test_bad_bearer_tokens_are_unauthenticated(secured_server: str, tenants: Tenants, case: str) -> None:
    api = bearer_api(secured_server, _token_cases(tenants)[case])
    try:
        with pytest.raises(grpc.RpcError) as err:
            api.runs.ListRuns(runs_pb2.ListRunsRequest())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value.details()
    finally:
        api.close()


def test_a_valid_token_acts_for_its_owner_like_that_owners_api_key(
    secured_server: str, tenants: Tenants
) -> None:
    by_key = api_key_api(secured_server, tenants.keys["alice"])
    by_token = bearer_api(secured_server, tenants.token("alice"))
    bob = bearer_api(secured_server, tenants.token("bob", roles="reader writer"))  # a scope-style string
    try:
        run = by_key.start("linear", {"x": 1})
        assert by_token.wait(run.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
        with pytest.raises(grpc.RpcError) as err:
            bob.get_run(run.run_id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        for api in (by_key, by_token, bob):
            api.close()


@pytest.mark.parametrize("credential", ["api-key", "jwt"])
def test_a_reader_reads_but_may_not_write(secured_server: str, tenants: Tenants, credential: str) -> None:
    writer = api_key_api(secured_server, tenants.keys["alice"])
    reader: Api = (
        api_key_api(secured_server, tenants.keys["alice-reader"])
        if credential == "api-key"
        else bearer_api(secured_server, tenants.token("alice", roles=["reader"]))
    )
    try:
        run = writer.start("linear", {"x": 2})
        assert reader.wait(run.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
        assert reader.join(run.run_id)[-1].WhichOneof("kind") == "run_finished"
        assert reader.state(run.session_id).values_json
        for write in (
            lambda: reader.start("linear", {"x": 3}),
            lambda: reader.sessions.DeleteSession(
                sessions_pb2.DeleteSessionRequest(session_id=run.session_id)
            ),
            lambda: reader.runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.run_id)),
        ):
            with pytest.raises(grpc.RpcError) as err:
                write()
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "writer" in (err.value.details() or "")
        assert writer.get_run(run.run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
    finally:
        writer.close()
        reader.close()


def test_a_principal_without_roles_is_denied_everything(secured_server: str, tenants: Tenants) -> None:
    api = api_key_api(secured_server, tenants.keys["no-roles"])
    try:
        with pytest.raises(grpc.RpcError) as err:
            api.graphs.ListGraphs(graphs_pb2.ListGraphsRequest())
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        api.close()


# -- the rate-limiter sidecar ------------------------------------------------------------------

LIMITER_SERVICE = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimiterService"]
LIMITER_METHODS = [(f"/{LIMITER_SERVICE.full_name}/{m.name}", m) for m in LIMITER_SERVICE.methods]


@pytest.fixture(scope="module")
def secured_sidecar(tenants: Tenants) -> Iterator[str]:
    sidecar = Sidecar(
        LIMITS, ["--auth-file", str(tenants.principals_file), "--jwt-keys", str(tenants.jwks_file)]
    )
    yield sidecar.target
    sidecar.close()


@pytest.mark.parametrize(("path", "method"), LIMITER_METHODS, ids=[p for p, _ in LIMITER_METHODS])
def test_every_sidecar_rpc_needs_credentials_and_the_limiter_role(
    secured_sidecar: str, tenants: Tenants, path: str, method: Any
) -> None:
    with grpc.insecure_channel(secured_sidecar) as channel:
        for metadata, code in [
            ((), grpc.StatusCode.UNAUTHENTICATED),
            ((("x-api-key", "sk_unknown"),), grpc.StatusCode.UNAUTHENTICATED),
            (
                (("authorization", f"Bearer {tenants.token('internal', ['limiter'], expires_in=-600)}"),),
                grpc.StatusCode.UNAUTHENTICATED,
            ),
            ((("x-api-key", tenants.keys["alice"]),), grpc.StatusCode.PERMISSION_DENIED),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                call_raw(channel, path, method, metadata)
            assert err.value.code() == code, (metadata, err.value.details())


@pytest.mark.parametrize("credential", ["api-key", "jwt"])
def test_the_sidecar_grants_to_a_caller_with_the_limiter_role(
    secured_sidecar: str, tenants: Tenants, credential: str
) -> None:
    metadata = (
        (("x-api-key", tenants.keys["limiter"]),)
        if credential == "api-key"
        else (("authorization", f"Bearer {tenants.token('internal', ['limiter'])}"),)
    )
    with grpc.insecure_channel(secured_sidecar) as channel:
        stub = ratelimit_pb2_grpc.RateLimiterServiceStub(channel)
        limits = stub.ListLimits(ratelimit_pb2.ListLimitsRequest(), metadata=metadata, timeout=10)
        assert [lim.key for lim in limits.limits] == ["test-api"]
        request = ratelimit_pb2.AcquireRequest(key="test-api", max_wait=duration_pb2.Duration(seconds=5))
        assert (
            stub.Acquire(request, metadata=metadata, timeout=10).outcome
            == ratelimit_pb2.ACQUIRE_OUTCOME_GRANTED
        )
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
