"""`serve --durability async`: the graph goes on while its checkpoints commit, and clients see
exactly what they see with the default: the runs, policies and session-stream tests' own bodies,
run again on such a server, plus what only this mode has to get right (a run ends only once all
its saves committed)."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Iterator

import pytest

from tests.rpc import Api
from tests.server.api import test_runs
from tests.server.api.cases import SERVER_CASES, case_id
from tests.support import ServerProcess

pytestmark = pytest.mark.process

SAME_AS_SYNC: list[Callable[[Api], None]] = [
    *SERVER_CASES,
    test_runs.test_event_kind_selection_is_kept_on_rejoin,
    test_runs.test_subgraph_events_carry_their_namespace_and_are_opt_in,
    test_runs.test_chat_model_tokens_stream_as_message_chunks,
    test_runs.test_custom_events_and_max_concurrency,
]


@pytest.fixture(scope="module")
def async_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: pathlib.Path = tmp_path_factory.mktemp("async-durability") / "stepstream.db"
    server = ServerProcess(f"sqlite+aiosqlite:///{path}", "--durability", "async")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server_address(async_server: ServerProcess) -> str:
    """The `api` fixture (tests/server/conftest.py) talks to this module's server."""
    return async_server.address


@pytest.mark.parametrize("case", SAME_AS_SYNC, ids=case_id)
def test_same_as_with_sync_durability(api: Api, case: Callable[[Api], None]) -> None:
    case(api)


def test_a_finished_run_has_all_its_checkpoints_committed(api: Api) -> None:
    for _ in range(20):
        events = api.stream("fanout", {"n": 6, "delay": 0.001}, max_concurrency=1)
        finished = [e.superstep_finished for e in events if e.WhichOneof("kind") == "superstep_finished"]
        assert events[-1].WhichOneof("kind") == "run_finished"
        # The session's latest checkpoint is the last superstep's, readable as soon as the run ended.
        state = api.state(api.get_run(events[-1].run_id).session_id)
        assert state.checkpoint_id == finished[-1].checkpoint_id
        assert json.loads(state.values_json) == json.loads(events[-1].run_finished.values_json)
