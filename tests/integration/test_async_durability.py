"""`serve --durability async`: the graph goes on while its checkpoints commit, and clients see
exactly what they see with the default: every test of test_runs.py, run again on such a server,
plus what only this mode has to get right (a run ends only once all its saves committed)."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

from tests.integration.rpc import Api
from tests.integration.test_runs import (  # noqa: F401  (collected here again, against this server)
    test_a_finished_superstep_is_already_durable_when_announced,
    test_a_retried_start_with_the_same_run_id_returns_the_same_run,
    test_chat_model_tokens_stream_as_message_chunks,
    test_custom_events_and_max_concurrency,
    test_event_kind_selection_is_kept_on_rejoin,
    test_failed_task_fails_the_run_with_its_error,
    test_interrupt_then_resume_on_the_same_session,
    test_join_after_seq_replays_the_rest_exactly_once,
    test_linear_run_streams_supersteps_and_tasks_in_order,
    test_subgraph_events_carry_their_namespace_and_are_opt_in,
)
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def async_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: pathlib.Path = tmp_path_factory.mktemp("async-durability") / "stepstream.db"
    server = ServerProcess(f"sqlite+aiosqlite:///{path}", "--durability", "async")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(async_server: ServerProcess) -> Iterator[Api]:
    client = Api(async_server.address)
    yield client
    client.close()


def test_a_finished_run_has_all_its_checkpoints_committed(api: Api) -> None:
    for _ in range(20):
        events = api.stream("fanout", {"n": 6, "delay": 0.001}, max_concurrency=1)
        finished = [e.superstep_finished for e in events if e.WhichOneof("kind") == "superstep_finished"]
        assert events[-1].WhichOneof("kind") == "run_finished"
        # The session's latest checkpoint is the last superstep's, readable as soon as the run ended.
        state = api.state(api.get_run(events[-1].run_id).session_id)
        assert state.checkpoint_id == finished[-1].checkpoint_id
        assert json.loads(state.values_json) == json.loads(events[-1].run_finished.values_json)
