"""`serve --durability async`: the graph goes on while its checkpoints commit, and clients see
exactly what they see with the default: the runs, policies and session-stream tests' own bodies,
run again on such a server, plus what only this mode has to get right (a run ends only once all
its saves committed)."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Iterator

import pytest

from tests.integration import test_policies, test_runs, test_session_stream
from tests.integration.rpc import Api
from tests.support import ServerProcess

SAME_AS_SYNC: list[Callable[[Api], None]] = [
    test_runs.test_linear_run_streams_supersteps_and_tasks_in_order,
    test_runs.test_join_after_seq_replays_the_rest_exactly_once,
    test_runs.test_event_kind_selection_is_kept_on_rejoin,
    test_runs.test_subgraph_events_carry_their_namespace_and_are_opt_in,
    test_runs.test_chat_model_tokens_stream_as_message_chunks,
    test_runs.test_custom_events_and_max_concurrency,
    test_runs.test_failed_task_fails_the_run_with_its_error,
    test_runs.test_interrupt_then_resume_on_the_same_session,
    test_runs.test_a_retried_start_with_the_same_run_id_returns_the_same_run,
    test_runs.test_a_finished_superstep_is_already_durable_when_announced,
    # Cancels and rollbacks: the paths where saves may still be queued when a run stops.
    test_policies.test_reject_refuses_a_second_run_and_keeps_the_first,
    test_policies.test_enqueue_runs_one_after_the_other,
    test_policies.test_interrupt_stops_the_active_run_and_keeps_its_checkpoints,
    test_policies.test_rollback_drops_the_active_runs_work,
    test_policies.test_cancel_leaves_a_checkpoint_the_session_continues_from,
    test_session_stream.test_interrupt_answered_on_the_same_stream,
    test_session_stream.test_cancel_on_the_stream_and_session_status,
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
    """The `api` fixture (tests/integration/conftest.py) talks to this module's server."""
    return async_server.address


@pytest.mark.parametrize("case", SAME_AS_SYNC, ids=lambda case: case.__name__.removeprefix("test_"))
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
