"""A graph written for LangGraph's server keeps memories in the server's store (runtime.store):
found from another session of the same tenant after a restart (SQLite file) and from another
replica (two servers on one PostgreSQL), never from another tenant's; a graph that opts out
(`"store": false`) gets none. Real `stepstream serve` processes with API keys.

The graph (tests/graphs/memory_graphs.py) names its user through `context_schema`; the tests
pass the user both as the run's context and as `configurable.user_id`, which the graph falls
back to while a server does not yet hand a run's context to the graph.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stepstream.v1 import runs_pb2
from tests.pgserver import PostgresServer, create_database
from tests.rpc import Api
from tests.security.conftest import Tenants, api_key_api, auth_args
from tests.support import ServerProcess

pytestmark = pytest.mark.process


def remember(api: Api, user: str, note: str = "", graph: str = "memory") -> dict[str, Any]:
    """One run of the graph in a new session; its final values."""
    request = runs_pb2.StreamRunRequest(
        run=runs_pb2.StartRunRequest(
            graph_id=graph,
            input_json=json.dumps({"note": note}),
            context_json=json.dumps({"user_id": user}),
            options=runs_pb2.RunOptions(configurable_json=json.dumps({"user_id": user})),
        )
    )
    events = [e for reply in api.runs.StreamRun(request, timeout=60) for e in reply.events]
    last = events[-1]
    assert last.WhichOneof("kind") == "run_finished", last
    values: dict[str, Any] = json.loads(last.run_finished.values_json)
    return values


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def test_memories_outlive_a_restart_and_stay_with_their_tenant(
    tenants: Tenants,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('memories') / 'db.sqlite'}"
    user = f"u-{uuid.uuid4().hex[:8]}"
    with ServerProcess(db, *auth_args(tenants)) as first:
        alice = api_key_api(first.address, tenants.keys["alice"])
        assert remember(alice, user, "likes tea")["recalled"] == ["likes tea"]
        second_session = remember(alice, user, "walks daily")
        assert second_session["recalled"] == ["likes tea", "walks daily"]
        # The sync node's `store: BaseStore` counts every memory of the tenant.
        assert second_session["tenant_memories"] == 2
        alice.close()

    with ServerProcess(db, *auth_args(tenants)) as restarted:
        alice = api_key_api(restarted.address, tenants.keys["alice"])
        bob = api_key_api(restarted.address, tenants.keys["bob"])
        try:
            assert remember(alice, user)["recalled"] == ["likes tea", "walks daily"]
            # Bob's user of the same name is another person: his store is empty.
            found = remember(bob, user, "bob's note")
            assert found["recalled"] == ["bob's note"] and found["tenant_memories"] == 1
            assert remember(alice, user)["recalled"] == ["likes tea", "walks daily"]
            # A graph that opts out of the server's store gets none; the same graph does not.
            assert remember(alice, user, graph="probe") == {"has_store": True}
            assert remember(alice, user, graph="probe_no_store") == {"has_store": False}
        finally:
            alice.close()
            bob.close()


def test_memories_are_shared_by_replicas_on_postgres(
    tenants: Tenants,
    postgres: PostgresServer,
) -> None:
    db = create_database(postgres.url)
    user = f"u-{uuid.uuid4().hex[:8]}"
    with (
        ServerProcess(db, *auth_args(tenants), "--replica", "r1") as one,
        ServerProcess(db, *auth_args(tenants), "--replica", "r2") as two,
    ):
        alice_one = api_key_api(one.address, tenants.keys["alice"])
        alice_two = api_key_api(two.address, tenants.keys["alice"])
        bob_two = api_key_api(two.address, tenants.keys["bob"])
        try:
            assert remember(alice_one, user, "likes tea")["recalled"] == ["likes tea"]
            assert remember(alice_two, user, "walks daily")["recalled"] == ["likes tea", "walks daily"]
            assert remember(alice_one, user)["recalled"] == ["likes tea", "walks daily"]
            assert remember(bob_two, user)["recalled"] == []
            assert remember(bob_two, user)["tenant_memories"] == 0
        finally:
            for api in (alice_one, alice_two, bob_two):
                api.close()
