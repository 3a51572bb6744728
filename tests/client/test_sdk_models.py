"""Resources decode from proto; options and commands encode to proto; listings page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stepstream.client.models import (
    Graph,
    Page,
    Run,
    RunStatus,
    Session,
    SessionState,
    SessionStatus,
    iter_items,
    iter_pages,
)
from stepstream.client.options import BusyPolicy, Command, RunOptions
from stepstream.v1 import common_pb2, graphs_pb2, runs_pb2, sessions_pb2


def test_run_decodes_with_options_and_unset_times() -> None:
    msg = runs_pb2.Run(
        run_id="r",
        session_id="s",
        graph_id="g",
        status=runs_pb2.RUN_STATUS_INTERRUPTED,
        attempt=2,
        last_seq=9,
        values_json='{"x": 1}',
        interrupts=[common_pb2.Interrupt(interrupt_id="i", value_json='"q?"')],
        options=runs_pb2.RunOptions(
            max_concurrency=3, busy_policy=common_pb2.BUSY_POLICY_ENQUEUE, configurable_json='{"k": 1}'
        ),
    )
    msg.created_at.FromDatetime(datetime(2026, 5, 1, tzinfo=UTC))
    run = Run.from_proto(msg)
    assert run.status is RunStatus.INTERRUPTED and run.ended
    assert run.values == {"x": 1}
    assert run.interrupts[0].value == "q?"
    assert run.created_at == datetime(2026, 5, 1, tzinfo=UTC)
    assert run.started_at is None and run.ended_at is None
    assert run.options == RunOptions(max_concurrency=3, busy_policy=BusyPolicy.ENQUEUE, configurable={"k": 1})


@pytest.mark.parametrize("status", list(RunStatus))
def test_run_status_round_trips(status: RunStatus) -> None:
    assert RunStatus.from_proto(status.to_proto()) is status


def test_only_final_statuses_are_ended() -> None:
    assert {s for s in RunStatus if s.ended} == {
        RunStatus.SUCCEEDED,
        RunStatus.INTERRUPTED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
    }


def test_session_state_and_graph_decode() -> None:
    session = Session.from_proto(
        sessions_pb2.Session(
            session_id="s", graph_id="g", status=sessions_pb2.SESSION_STATUS_BUSY, metadata_json=""
        )
    )
    assert session.status is SessionStatus.BUSY and session.metadata is None
    state = SessionState.from_proto(
        sessions_pb2.SessionState(
            values_json='{"a": [1]}', next=["b"], step=4, source="loop", checkpoint_id="c"
        )
    )
    assert (state.values, state.next, state.step, state.source) == ({"a": [1]}, ("b",), 4, "loop")
    graph = Graph.from_proto(
        graphs_pb2.Graph(graph_id="g", nodes=["a", "b"], input_schema_json='{"type": "object"}')
    )
    assert (
        graph.nodes == ("a", "b") and graph.input_schema == {"type": "object"} and graph.state_schema is None
    )


def test_run_options_encode_defaults_as_zero_values() -> None:
    assert RunOptions().to_proto() == runs_pb2.RunOptions()
    msg = RunOptions(
        max_concurrency=2,
        busy_policy=BusyPolicy.ROLLBACK,
        recursion_limit=50,
        metadata={"who": "me"},
        interrupt_before=["b"],
    ).to_proto()
    assert msg.busy_policy == common_pb2.BUSY_POLICY_ROLLBACK
    assert (msg.max_concurrency, msg.recursion_limit, msg.metadata_json) == (2, 50, '{"who":"me"}')
    assert list(msg.interrupt_before) == ["b"] and msg.configurable_json == ""
    assert RunOptions.from_proto(msg).busy_policy is BusyPolicy.ROLLBACK


def test_command_resume_none_is_json_null_but_unset_is_absent() -> None:
    assert Command(resume=None).to_proto().resume_json == "null"
    assert Command().to_proto().resume_json == ""
    msg = Command(resume_by_id={"i1": "yes", "i2": None}, update={"x": 1}, goto=["a"]).to_proto()
    assert dict(msg.resume_by_interrupt_id_json) == {"i1": '"yes"', "i2": "null"}
    assert (msg.update_json, list(msg.goto)) == ('{"x":1}', ["a"])
    with pytest.raises(ValueError, match="either"):
        Command(resume=1, resume_by_id={"i": 2}).to_proto()


async def test_paging_follows_tokens_and_honours_limit() -> None:
    pages = {"": Page((1, 2), "p2"), "p2": Page((3,), "p3"), "p3": Page((4, 5), "")}
    asked: list[str] = []

    async def fetch(token: str) -> Page[int]:
        asked.append(token)
        return pages[token]

    assert [p.items async for p in iter_pages(fetch)] == [(1, 2), (3,), (4, 5)]
    assert [i async for i in iter_items(fetch)] == [1, 2, 3, 4, 5]
    asked.clear()
    assert [i async for i in iter_items(fetch, limit=3)] == [1, 2, 3]
    assert asked == ["", "p2"]  # no page fetched beyond the limit
    assert [i async for i in iter_items(fetch, limit=0)] == []
