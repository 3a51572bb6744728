"""Assistants on PostgreSQL shared by replicas (storage/assistants.py): replicas starting at
once create each default assistant once, updates from both number their versions without a
gap or a repeat, and metadata containment reads the same as on SQLite."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stepstream.server.core.assistants import default_assistant_id
from stepstream.server.core.registry import read_config
from stepstream.server.storage.db import upgrade
from stepstream.v1 import assistants_pb2, assistants_pb2_grpc, runs_pb2
from tests.pgserver import create_database
from tests.rpc import Api
from tests.support import GRAPHS_CONFIG, ServerProcess

pytestmark = pytest.mark.process

GRAPH_IDS = sorted(spec.graph_id for spec in read_config(GRAPHS_CONFIG))


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    async def read() -> list[tuple[object, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(sa.text(query))]
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.fixture(scope="module")
def replicas(postgres_url: str) -> Iterator[tuple[str, list[Api]]]:
    db = create_database(postgres_url)
    # Migrated once, as `stepstream up` does before it starts its replicas with --no-migrate.
    upgrade(db)
    servers = [ServerProcess(db, "--no-migrate"), ServerProcess(db, "--no-migrate")]
    # Both start (load graphs, create the default assistants) at the same moment.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        addresses = list(pool.map(lambda s: s.start(), servers))
    apis = [Api(address) for address in addresses]
    yield db, apis
    for api in apis:
        api.close()
    for server in servers:
        server.stop()


def test_replicas_starting_at_once_create_each_default_assistant_once(
    replicas: tuple[str, list[Api]],
) -> None:
    db, apis = replicas
    stored = rows(db, "SELECT owner, assistant_id, graph_id, version FROM assistants WHERE is_default")
    assert sorted(graph for _, _, graph, _ in stored) == GRAPH_IDS
    assert {(aid, version) for _, aid, graph, version in stored} == {
        (default_assistant_id(g), 1) for g in GRAPH_IDS
    }
    assert len({owner for owner, _, _, _ in stored}) == 1
    versions = rows(db, "SELECT assistant_id, version FROM assistant_versions")
    assert sorted(versions) == sorted((default_assistant_id(g), 1) for g in GRAPH_IDS)
    # Both replicas answer with the one row.
    for api in apis:
        got = assistants_pb2_grpc.AssistantServiceStub(api.channel).GetAssistant(
            assistants_pb2.GetAssistantRequest(assistant_id="linear")
        )
        assert got.assistant.assistant_id == default_assistant_id("linear") and got.assistant.version == 1


def test_concurrent_updates_from_both_replicas_number_versions_once_each(
    replicas: tuple[str, list[Api]],
) -> None:
    db, apis = replicas
    stubs = [assistants_pb2_grpc.AssistantServiceStub(api.channel) for api in apis]
    made = stubs[0].CreateAssistant(assistants_pb2.CreateAssistantRequest(graph_id="context")).assistant

    def update(i: int) -> int:
        request = assistants_pb2.UpdateAssistantRequest(
            assistant_id=made.assistant_id, config_json=json.dumps({"i": i})
        )
        return int(stubs[i % 2].UpdateAssistant(request).assistant.version)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(update, range(20)))
    assert versions == list(range(2, 22))
    saved = rows(db, f"SELECT version FROM assistant_versions WHERE assistant_id = '{made.assistant_id}'")
    assert sorted(v for (v,) in saved) == list(range(1, 22))
    live = stubs[1].GetAssistant(assistants_pb2.GetAssistantRequest(assistant_id=made.assistant_id))
    assert live.assistant.version == 21


def test_search_by_metadata_and_runs_as_an_assistant_on_postgresql(replicas: tuple[str, list[Api]]) -> None:
    _, apis = replicas
    stub = assistants_pb2_grpc.AssistantServiceStub(apis[0].channel)
    metadata = [
        {"pg": "yes", "env": {"tier": "prod"}, "n": 1},
        {"pg": "yes", "env": {"tier": "dev"}, "n": 1.5},
    ]
    ids = [
        stub.CreateAssistant(
            assistants_pb2.CreateAssistantRequest(
                graph_id="context", metadata_json=json.dumps(m), context_json='{"user": "pg"}'
            )
        ).assistant.assistant_id
        for m in metadata
    ]

    def search(filter: object) -> list[str]:
        request = assistants_pb2.SearchAssistantsRequest(metadata_json=json.dumps(filter))
        return [a.assistant_id for a in stub.SearchAssistants(request).assistants]

    assert search({"pg": "yes"}) == ids[::-1]
    assert search({"pg": "yes", "env": {"tier": "prod"}}) == [ids[0]]
    assert search({"pg": "yes", "env": {}}) == ids[::-1]
    assert search({"pg": "yes", "n": 1.5}) == [ids[1]]
    assert search({"pg": "yes", "missing": None}) == []
    # A run started on one replica as an assistant created on the other.
    run = apis[1].runs.StartRun(runs_pb2.StartRunRequest(assistant_id=ids[0], input_json="{}")).run
    done = apis[1].wait(run.run_id)
    assert json.loads(done.values_json)["seen"] == ["pg/plain/3"]
