"""Tests whose bodies take only an `Api`, so another server set-up can run them as they are.

A module that serves the same API another way (another back end, another durability) runs
them against its own server and is held to the same asserts (test_postgres.py,
test_async_durability.py).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.rpc import Api
from tests.server.api import test_policies, test_runs, test_session_stream

SERVER_CASES: list[Callable[[Api], None]] = [
    test_runs.test_linear_run_streams_supersteps_and_tasks_in_order,
    test_runs.test_join_after_seq_replays_the_rest_exactly_once,
    test_runs.test_failed_task_fails_the_run_with_its_error,
    test_runs.test_interrupt_then_resume_on_the_same_session,
    test_runs.test_a_retried_start_with_the_same_run_id_returns_the_same_run,
    test_runs.test_a_finished_superstep_is_already_durable_when_announced,
    test_policies.test_reject_refuses_a_second_run_and_keeps_the_first,
    test_policies.test_enqueue_runs_one_after_the_other,
    test_policies.test_interrupt_stops_the_active_run_and_keeps_its_checkpoints,
    test_policies.test_rollback_drops_the_active_runs_work,
    test_policies.test_cancel_leaves_a_checkpoint_the_session_continues_from,
    test_session_stream.test_interrupt_answered_on_the_same_stream,
    test_session_stream.test_cancel_on_the_stream_and_session_status,
]


def case_id(case: Callable[[Api], None]) -> str:
    return case.__name__.removeprefix("test_")
