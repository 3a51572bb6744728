"""PostgreSQL restarted under load against one replica: every run a client was told had
started either succeeds or fails cleanly (its status and terminal event agree), clients
retry starts with the same run id, and the database is consistent afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from stepstream.v1 import runs_pb2
from tests.consistency import problems
from tests.pgserver import PostgresServer
from tests.rpc import Api
from tests.support import ServerProcess
from tests.tally import settle

pytestmark = pytest.mark.process

CLIENTS = 4
LOAD_SECONDS = 8.0
RESTART_AT = 2.5


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own: it is restarted, which the shared one must not be."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def _start_with_retries(api: Api, run_id: str, give_up: float) -> bool:
    """StartRun with a caller-chosen id, retried while the server cannot reach its database."""
    request = runs_pb2.StartRunRequest(
        graph_id="slow", input_json='{"steps": 4, "delay": 0.05}', run_id=run_id
    )
    while time.monotonic() < give_up:
        try:
            api.runs.StartRun(request, timeout=10)
            return True
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise
            time.sleep(0.2)
    return False


def test_postgres_restarted_under_load_loses_no_run(own_postgres: PostgresServer) -> None:
    db_url = own_postgres.new_database()
    server = ServerProcess(db_url)
    api = Api(server.start())
    started: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS

    def client() -> None:
        while time.monotonic() < stop_at:
            run_id = f"pg-{uuid.uuid4()}"
            ok = _start_with_retries(api, run_id, time.monotonic() + 30)
            with lock:
                (started if ok else refused).append(run_id)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(RESTART_AT)
        own_postgres.restart()
        for thread in threads:
            thread.join(60)
        tally = settle(api, started, timeout=60)
        print(f"postgres restarted under load: {tally}; starts given up: {len(refused)}")
        for run_id, error in list(tally.errors.items())[:5]:
            print(f"  {run_id}: {error[:200]}")
        assert tally.lost == [], tally
        assert refused == []
        assert tally.by_status.get("RUN_STATUS_SUCCEEDED", 0) > 0, tally
        # The replica still works once the database is back.
        assert api.stream("linear", {"x": 1})[-1].WhichOneof("kind") == "run_finished"
    finally:
        api.close()
        server.stop()
    found = problems(db_url)
    assert found == [], found[:20]
