"""Property-based fuzzing of every RPC of both services, for a bounded time each.

Hypothesis builds requests from the protobuf descriptors: any field set or not,
JSON payloads valid, malformed, huge or deeply nested, ids of the caller's own
sessions and runs, of another tenant's and of nobody's, numbers at and beyond
their ranges, unknown enum values, and requests that are not protobuf at all.
Every answer must be a proper status (never UNKNOWN, INTERNAL or UNAVAILABLE),
the servers must stay up, and afterwards the database must pass the
consistency check (tests/consistency.py).
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepstream.v1 import assistants_pb2, graphs_pb2, inspector_pb2, ratelimit_pb2, runs_pb2, sessions_pb2
from tests.consistency import problems
from tests.ratelimiter.conftest import Sidecar
from tests.security.conftest import Tenants, api_key_api, auth_args
from tests.support import ROOT, ServerProcess

pytestmark = pytest.mark.process

# Seconds of fuzzing per service (STEPSTREAM_FUZZ_SECONDS for a longer local run).
BUDGET_S = float(os.environ.get("STEPSTREAM_FUZZ_SECONDS", "30"))
CALL_TIMEOUT_S = 2.0
LIMITS = ROOT / "tests" / "graphs" / "limits.toml"
# Statuses a well-behaved server may answer a random request with.
PROPER = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    # The client's own deadline (a WaitRun or a stream of a long run).
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
PROPER_CODES = {c.value[0] for c in PROPER}

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def json_texts() -> st.SearchStrategy[str]:
    import json

    return st.one_of(
        json_values.map(json.dumps),
        st.dictionaries(st.sampled_from(["x", "question", "steps", "delay", "n", "items"]), json_values).map(
            json.dumps
        ),
        st.text(max_size=40),  # rarely JSON
        st.integers(60, 3000).map(lambda d: "[" * d + "]" * d),
        st.integers(1, 3).map(lambda n: '{"blob": "' + "x" * (n * 700_000) + '"}'),
        st.just('{"x": 1'),
    )


def ids(pool: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(pool), st.text(max_size=30), st.text(min_size=1000, max_size=1100))


def value_strategy(field: FieldDescriptor, pool: list[str], depth: int) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        if field.name.endswith("_json"):
            return json_texts()
        return ids(pool)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(
            allow_nan=True, allow_infinity=True, width=64 if t == FieldDescriptor.TYPE_DOUBLE else 32
        )
    if t == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)
    if t == FieldDescriptor.TYPE_MESSAGE:
        return message_strategy(field.message_type, pool, depth + 1)
    lo, hi = _INT_RANGES[t]
    return st.one_of(st.integers(max(lo, -5), min(hi, 200)), st.integers(lo, hi), st.sampled_from([lo, hi]))


def message_strategy(descriptor: Descriptor, pool: list[str], depth: int = 0) -> st.SearchStrategy[Message]:
    cls = GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            parts[field.name] = st.dictionaries(
                value_strategy(key_field, pool, depth), value_strategy(value_field, pool, depth), max_size=3
            )
        elif field.is_repeated:
            parts[field.name] = st.one_of(
                st.lists(value_strategy(field, pool, depth), max_size=4),
                st.lists(value_strategy(field, pool, depth), min_size=257, max_size=300)
                if depth == 0
                else st.just([]),
            )
        else:
            parts[field.name] = st.one_of(st.none(), value_strategy(field, pool, depth))
    # Most fields left unset most of the time: requests close to valid reach deeper code.
    chosen = {name: st.one_of(st.none(), st.none(), strategy) for name, strategy in parts.items()}
    return st.fixed_dictionaries(chosen).map(lambda values: _build(cls, values))


def _build(cls: Any, values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        if value is None:
            continue
        field = getattr(message, name)
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, Message):
                    field[k].CopyFrom(v)
                else:
                    field[k] = v
        elif isinstance(value, list):
            if value and isinstance(value[0], Message):
                for item in value:
                    field.add().CopyFrom(item)
            else:
                field.extend(value)
        elif isinstance(value, Message):
            field.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def call(channel: grpc.Channel, method: MethodDescriptor, payloads: list[bytes], metadata: Any) -> list[Any]:
    """One call of `method` with raw request bytes; the decoded answers."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    decode = GetMessageClass(method.output_type).FromString
    if method.client_streaming and method.server_streaming:
        stub = channel.stream_stream(path, response_deserializer=decode)
        return list(stub(iter(payloads), metadata=metadata, timeout=CALL_TIMEOUT_S))
    if method.server_streaming:
        stub_us = channel.unary_stream(path, response_deserializer=decode)
        return list(stub_us(payloads[0], metadata=metadata, timeout=CALL_TIMEOUT_S))
    stub_uu = channel.unary_unary(path, response_deserializer=decode)
    return [stub_uu(payloads[0], metadata=metadata, timeout=CALL_TIMEOUT_S)]


def request_strategy(method: MethodDescriptor, pool: list[str]) -> st.SearchStrategy[list[bytes]]:
    one = st.one_of(
        message_strategy(method.input_type, pool).map(lambda m: m.SerializeToString()),
        st.binary(max_size=80),  # not protobuf, or not this message
    )
    count = (1, 4) if method.client_streaming else (1, 1)
    return st.lists(one, min_size=count[0], max_size=count[1])


def metadata_strategy(good: tuple[tuple[str, str], ...]) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    return st.one_of(
        st.just(good),
        st.just(good),
        st.just(good),
        st.just(()),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", max_size=60).map(
            lambda t: (("authorization", f"Bearer {t}"),)
        ),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", max_size=60).map(
            lambda t: (("x-api-key", t),)
        ),
    )


def _stream_errors(answers: list[Any]) -> list[int]:
    """Codes of per-message errors inside a stream's answers (session and acquire streams)."""
    codes = []
    for answer in answers:
        if isinstance(answer, sessions_pb2.SessionStreamResponse) and answer.HasField("error"):
            codes.append(answer.error.code)
        if isinstance(answer, ratelimit_pb2.AcquireStreamResponse) and answer.error_code:
            codes.append(answer.error_code)
    return codes


def fuzz(address: str, methods: list[MethodDescriptor], pool: list[str], key: str) -> dict[str, int]:
    """Fuzz for BUDGET_S seconds; the count of answers by status code."""
    deadline = time.monotonic() + BUDGET_S
    seen: dict[str, int] = {}
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)])

    @settings(
        # Several short runs until the budget is spent (each a fresh random start).
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(methods))
        payloads = data.draw(request_strategy(method, pool))
        metadata = data.draw(metadata_strategy((("x-api-key", key),)))
        if time.monotonic() > deadline:  # drawn all the same: hypothesis needs the same draws
            return
        try:
            answers = call(channel, method, payloads, metadata)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
            answers = []
            assert code in PROPER, f"{method.full_name}: {code} {error.details()}"
        bad = [c for c in _stream_errors(answers) if c not in PROPER_CODES]
        assert not bad, f"{method.full_name}: stream error codes {bad}"
        seen[code.name] = seen.get(code.name, 0) + 1
        seen[f"{method.name} {code.name}"] = seen.get(f"{method.name} {code.name}", 0) + 1

    try:
        while time.monotonic() < deadline:
            one()
    finally:
        channel.close()
    print(f"fuzzed {address}: {sorted(seen.items())}")
    return seen


def _methods(*modules: Any) -> list[MethodDescriptor]:
    return [m for module in modules for s in module.DESCRIPTOR.services_by_name.values() for m in s.methods]


@pytest.fixture(scope="module")
def fuzzed_server(
    tenants: Tenants, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    db_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'db.sqlite'}"
    server = ServerProcess(db_url, *auth_args(tenants), "--limits", str(LIMITS))
    server.start()
    yield server, db_url
    server.stop()


def test_random_requests_to_every_graph_server_rpc(
    fuzzed_server: tuple[ServerProcess, str], tenants: Tenants
) -> None:
    server, db_url = fuzzed_server
    alice = api_key_api(server.address, tenants.keys["alice"])
    bob = api_key_api(server.address, tenants.keys["bob"])
    try:
        # Ids the fuzzer may aim at: its own (alice's), another tenant's (bob's), graph names.
        own = [alice.stream("linear", {"x": 1}), alice.stream("ask", {"question": "q?"})]
        other = bob.stream("linear", {"x": 2})
        pool = ["linear", "ask", "slow", "boom", "chat", "fanout", "nested", "limited", ""]
        for events in (*own, other):
            run = bob.get_run(events[0].run_id) if events is other else alice.get_run(events[0].run_id)
            pool += [run.run_id, run.session_id]
        methods = _methods(graphs_pb2, sessions_pb2, runs_pb2, assistants_pb2, inspector_pb2)
        seen = fuzz(server.address, methods, pool, tenants.keys["alice"])
        assert server.proc is not None and server.proc.poll() is None, "the server died"
        assert sum(seen.values()) > 50, seen
        assert seen.get("OK", 0) > 0 and seen.get("INVALID_ARGUMENT", 0) > 0, seen
        # Still serving, and bob's run untouched by anything the fuzzer (as alice) sent.
        assert alice.stream("linear", {"x": 3})[-1].WhichOneof("kind") == "run_finished"
        assert bob.get_run(other[0].run_id).status == runs_pb2.RUN_STATUS_SUCCEEDED
    finally:
        alice.close()
        bob.close()
    server.stop()
    found = problems(db_url)
    assert found == [], found[:20]


def test_random_requests_to_every_sidecar_rpc(tenants: Tenants) -> None:
    sidecar = Sidecar(LIMITS, ["--auth-file", str(tenants.principals_file)])
    try:
        pool = ["test-api", "unknown-key", ""]
        methods = _methods(ratelimit_pb2)
        seen = fuzz(sidecar.target, methods, pool, tenants.keys["limiter"])
        assert sidecar.proc.poll() is None, "the sidecar died"
        assert sum(seen.values()) > 50 and seen.get("OK", 0) > 0, seen
        with grpc.insecure_channel(sidecar.target) as channel:
            listed = call(
                channel,
                methods[[m.name for m in methods].index("ListLimits")],
                [b""],
                (("x-api-key", tenants.keys["limiter"]),),
            )
        assert [lim.key for lim in listed[0].limits] == ["test-api"]
    finally:
        sidecar.close()


def test_the_consistency_check_finds_a_half_written_run(tmp_path: pathlib.Path) -> None:
    """The check is not vacuous: a run marked succeeded without its terminal event is reported."""
    import sqlalchemy as sa

    from stepstream.server.storage.db import upgrade
    from stepstream.server.storage.schema import run_events, runs, sessions

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(db_url, "head")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(
            sessions.insert().values(
                session_id="s", owner="o", graph_id="g", status="idle", created_at=0, updated_at=0
            )
        )
        conn.execute(
            runs.insert().values(
                run_id="r",
                owner="o",
                session_id="s",
                graph_id="g",
                status="succeeded",
                created_at=0,
                ended_at=1,
                last_seq=2,
            )
        )
        conn.execute(
            run_events.insert().values(
                run_id="r", seq=1, session_id="s", created_at=0, kind="run_queued", body=b"{}"
            )
        )
        conn.execute(
            runs.insert().values(
                run_id="orphan", owner="o", session_id="gone", graph_id="g", status="queued", created_at=0
            )
        )
    engine.dispose()
    found = problems(db_url)
    assert any("r is succeeded but its events end" in p for p in found), found
    assert any("orphan belongs to missing session" in p for p in found), found
