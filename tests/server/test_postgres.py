"""The server on PostgreSQL: the same runs, streams, interrupts, cancels and crash recovery as on SQLite.

One `stepstream serve` process on a fresh database of the session's throwaway PostgreSQL
server runs the SQLite tests' own bodies, so both back ends are held to the same asserts.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stepstream.v1 import runs_pb2, sessions_pb2
from tests.pgserver import create_database
from tests.rpc import Api
from tests.server.api.cases import SERVER_CASES, case_id
from tests.server.test_lifecycle import check_sigkill_recovery
from tests.support import ServerProcess

pytestmark = pytest.mark.process


def _count_rows(url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                tables = ("sessions", "runs", "run_events", "checkpoints")
                return {
                    t: int((await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one())
                    for t in tables
                }
        finally:
            await engine.dispose()

    return asyncio.run(count())


@pytest.fixture(scope="module")
def pg_db(postgres_url: str) -> str:
    return create_database(postgres_url)


@pytest.fixture(scope="module")
def pg_server(pg_db: str) -> Iterator[ServerProcess]:
    server = ServerProcess(pg_db)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_api(pg_server: ServerProcess) -> Iterator[Api]:
    client = Api(pg_server.address)
    yield client
    client.close()


@pytest.mark.parametrize("case", SERVER_CASES, ids=case_id)
def test_same_as_on_sqlite(pg_api: Api, case: Callable[[Api], None]) -> None:
    case(pg_api)


def test_state_lives_in_postgresql(pg_api: Api, pg_db: str) -> None:
    assert pg_db.startswith("postgresql+asyncpg://")
    pg_api.stream("linear", {"x": 1})
    counts = _count_rows(pg_db)
    assert all(counts[t] > 0 for t in counts), counts


def test_taken_ids_and_paging(pg_api: Api) -> None:
    first = pg_api.stream("linear", {"x": 1})
    session_id = pg_api.get_run(first[0].run_id).session_id
    # A unique violation on PostgreSQL is recognised as such (SQLSTATE 23505).
    with pytest.raises(grpc.RpcError) as err:
        pg_api.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(graph_id="linear", session_id=session_id)
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for _ in range(4):
        pg_api.stream("linear", {"x": 0})
    every = [r.run_id for r in pg_api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=1000)).runs]
    paged: list[str] = []
    token = ""
    while True:
        reply = pg_api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=2, page_token=token))
        paged += [r.run_id for r in reply.runs]
        token = reply.next_page_token
        if not token:
            break
    assert paged == every and len(every) >= 5
    # A well-formed token of the wrong types is refused, not passed to the driver.
    forged = base64.urlsafe_b64encode(b'["yesterday", 1]').decode()
    with pytest.raises(grpc.RpcError) as err:
        pg_api.runs.ListRuns(runs_pb2.ListRunsRequest(page_size=2, page_token=forged))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_sigkill_mid_run_then_restart_finishes_without_redoing_supersteps(postgres_url: str) -> None:
    db = create_database(postgres_url)
    # The restart is given a bare postgresql:// URL: the server picks the async driver itself.
    check_sigkill_recovery(db, db.replace("postgresql+asyncpg://", "postgresql://"))
