"""Events decode from proto into one frozen dataclass per kind."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from stepstream.client.events import (
    CustomEvent,
    EventKind,
    InterruptRaised,
    MessageChunk,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunQueued,
    RunStarted,
    StateValues,
    SuperstepFinished,
    SuperstepStarted,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    UnknownEvent,
    decode_event,
    kinds_to_proto,
)
from stepstream.client.models import Interrupt, TaskRef
from stepstream.v1 import common_pb2, events_pb2

TASK = common_pb2.TaskRef(task_id="t1", node="a", namespace=["sub:1"])


def event(**kind: object) -> events_pb2.RunEvent:
    msg = events_pb2.RunEvent(run_id="r1", seq=7, namespace=["sub:1"], **kind)  # type: ignore[arg-type]
    msg.time.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    return msg


CASES = [
    (
        event(run_queued=events_pb2.RunQueued(session_id="s", graph_id="g", position=2)),
        "run_queued",
        RunQueued("s", "g", 2),
    ),
    (
        event(run_started=events_pb2.RunStarted(session_id="s", graph_id="g", attempt=1, replica="r-a")),
        "run_started",
        RunStarted("s", "g", 1, "r-a"),
    ),
    (
        event(superstep_started=events_pb2.SuperstepStarted(step=1, tasks=[TASK])),
        "superstep_started",
        SuperstepStarted(1, (TaskRef("t1", "a", ("sub:1",)),)),
    ),
    (
        event(task_started=events_pb2.TaskStarted(step=1, task=TASK, input_json='{"x": 1}')),
        "task_started",
        TaskStarted(1, TaskRef("t1", "a", ("sub:1",)), {"x": 1}),
    ),
    (
        event(
            task_finished=events_pb2.TaskFinished(
                step=1, task=TASK, update_json='{"x": 2}', duration_seconds=0.25
            )
        ),
        "task_finished",
        TaskFinished(1, TaskRef("t1", "a", ("sub:1",)), {"x": 2}, 0.25),
    ),
    (
        event(
            task_failed=events_pb2.TaskFailed(
                step=2, task=TASK, error_type="ValueError", error_message="boom", duration_seconds=0.5
            )
        ),
        "task_failed",
        TaskFailed(2, TaskRef("t1", "a", ("sub:1",)), "ValueError", "boom", 0.5),
    ),
    (
        event(superstep_finished=events_pb2.SuperstepFinished(step=1, checkpoint_id="c1")),
        "superstep_finished",
        SuperstepFinished(1, "c1"),
    ),
    (
        event(
            interrupt_raised=events_pb2.InterruptRaised(
                step=1, interrupts=[common_pb2.Interrupt(interrupt_id="i1", value_json='"question?"')]
            )
        ),
        "interrupt_raised",
        InterruptRaised(1, (Interrupt("i1", "question?"),)),
    ),
    (
        event(
            message_chunk=events_pb2.MessageChunk(
                message_id="m1", node="llm", step=3, chunk_json='{"type": "AIMessageChunk", "content": "hi"}'
            )
        ),
        "message_chunk",
        MessageChunk("m1", "llm", 3, {"type": "AIMessageChunk", "content": "hi"}),
    ),
    (event(custom=events_pb2.CustomEvent(node="w", value_json="[1, 2]")), "custom", CustomEvent("w", [1, 2])),
    (
        event(state_values=events_pb2.StateValues(step=2, values_json='{"x": 3}')),
        "state_values",
        StateValues(2, {"x": 3}),
    ),
    (
        event(run_finished=events_pb2.RunFinished(values_json='{"x": 4}')),
        "run_finished",
        RunFinished({"x": 4}, ()),
    ),
    (
        event(run_failed=events_pb2.RunFailed(error_type="ValueError", error_message="boom")),
        "run_failed",
        RunFailed("ValueError", "boom"),
    ),
    (
        event(run_cancelled=events_pb2.RunCancelled(reason="user", rolled_back=True)),
        "run_cancelled",
        RunCancelled("user", True),
    ),
]


@pytest.mark.parametrize(("msg", "kind", "data"), CASES, ids=[c[1] for c in CASES])
def test_every_kind_decodes(msg: events_pb2.RunEvent, kind: str, data: object) -> None:
    decoded = decode_event(msg)
    assert decoded.kind == kind
    assert decoded.data == data
    assert (decoded.run_id, decoded.seq, decoded.namespace) == ("r1", 7, ("sub:1",))
    assert decoded.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert decoded.terminal == (kind in {"run_finished", "run_failed", "run_cancelled"})


def test_events_are_frozen() -> None:
    decoded = decode_event(CASES[0][0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.seq = 8  # type: ignore[misc]


def test_event_without_kind_or_time_is_kept_as_unknown() -> None:
    decoded = decode_event(events_pb2.RunEvent(run_id="r", seq=1))
    assert decoded.kind == "unknown"
    assert decoded.data == UnknownEvent()
    assert decoded.time is None
    assert not decoded.terminal


def test_run_finished_at_an_interrupt_carries_it() -> None:
    msg = event(
        run_finished=events_pb2.RunFinished(
            values_json="{}",
            interrupts=[common_pb2.Interrupt(interrupt_id="i", value_json='{"q": 1}', namespace=["n:1"])],
        )
    )
    data = decode_event(msg).data
    assert isinstance(data, RunFinished)
    assert data.interrupts == (Interrupt("i", {"q": 1}, ("n:1",)),)


@pytest.mark.parametrize(
    ("chunk", "text"),
    [
        ({"content": "plain"}, "plain"),
        ({"content": [{"type": "text", "text": "a"}, "b", {"type": "image"}]}, "ab"),
        ({"content": 3}, ""),
        (None, ""),
    ],
)
def test_message_chunk_text(chunk: object, text: str) -> None:
    assert MessageChunk("m", "n", 1, chunk).text == text


def test_event_kind_selection() -> None:
    assert kinds_to_proto(None) == []
    assert kinds_to_proto(["tasks", EventKind.VALUES]) == [
        events_pb2.EVENT_KIND_TASKS,
        events_pb2.EVENT_KIND_VALUES,
    ]
    with pytest.raises(ValueError):
        kinds_to_proto(["nope"])
