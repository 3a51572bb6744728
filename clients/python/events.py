"""Run events, decoded: one frozen dataclass per kind, wrapped in a RunEvent.

`RunEvent.kind` is the name of the proto oneof field ("task_finished", ...)
and `RunEvent.data` the matching payload dataclass, so callers can either
compare kinds or `match event.data: case TaskFinished(...)`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from datetime import datetime
from typing import TypeAlias

from stepstream.client.jsonio import Json, decode
from stepstream.client.models import Interrupt, TaskRef, timestamp
from stepstream.v1 import events_pb2


class EventKind(enum.StrEnum):
    """Kinds a caller may select; lifecycle events and interrupts always come."""

    SUPERSTEPS = "supersteps"
    TASKS = "tasks"
    MESSAGE_CHUNKS = "message_chunks"
    CUSTOM = "custom"
    VALUES = "values"

    def to_proto(self) -> events_pb2.EventKind.ValueType:
        return events_pb2.EventKind.Value(f"EVENT_KIND_{self.name}")


def kinds_to_proto(kinds: Iterable[EventKind | str] | None) -> list[events_pb2.EventKind.ValueType]:
    """An event-kind selection for a request; None or empty selects every kind."""
    return [EventKind(k).to_proto() for k in kinds or ()]


@dataclasses.dataclass(frozen=True)
class RunQueued:
    session_id: str
    graph_id: str
    position: int


@dataclasses.dataclass(frozen=True)
class RunStarted:
    session_id: str
    graph_id: str
    attempt: int
    replica: str


@dataclasses.dataclass(frozen=True)
class SuperstepStarted:
    step: int
    tasks: tuple[TaskRef, ...]


@dataclasses.dataclass(frozen=True)
class TaskStarted:
    step: int
    task: TaskRef
    input: Json


@dataclasses.dataclass(frozen=True)
class TaskFinished:
    step: int
    task: TaskRef
    update: Json
    duration: float


@dataclasses.dataclass(frozen=True)
class TaskFailed:
    step: int
    task: TaskRef
    error_type: str
    error_message: str
    duration: float


@dataclasses.dataclass(frozen=True)
class SuperstepFinished:
    step: int
    checkpoint_id: str


@dataclasses.dataclass(frozen=True)
class InterruptRaised:
    step: int
    interrupts: tuple[Interrupt, ...]


@dataclasses.dataclass(frozen=True)
class MessageChunk:
    message_id: str
    node: str
    step: int
    # A LangChain message dict, e.g. {"type": "AIMessageChunk", "content": "hi"}.
    chunk: Json

    @property
    def text(self) -> str:
        """The chunk's text content (string content, or the text parts of a list)."""
        content = self.chunk.get("content", "") if isinstance(self.chunk, dict) else ""
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                part if isinstance(part, str) else str(part.get("text", ""))
                for part in content
                if isinstance(part, str | dict)
            )
        return ""


@dataclasses.dataclass(frozen=True)
class CustomEvent:
    node: str
    value: Json


@dataclasses.dataclass(frozen=True)
class StateValues:
    step: int
    values: Json


@dataclasses.dataclass(frozen=True)
class RunFinished:
    values: Json
    # Interrupts the run stopped at; empty when the graph reached its end.
    interrupts: tuple[Interrupt, ...]


@dataclasses.dataclass(frozen=True)
class RunFailed:
    error_type: str
    error_message: str


@dataclasses.dataclass(frozen=True)
class RunCancelled:
    reason: str
    rolled_back: bool


@dataclasses.dataclass(frozen=True)
class UnknownEvent:
    """An event kind newer than this SDK; kept so a stream never breaks on it."""


EventData: TypeAlias = (
    RunQueued
    | RunStarted
    | SuperstepStarted
    | TaskStarted
    | TaskFinished
    | TaskFailed
    | SuperstepFinished
    | InterruptRaised
    | MessageChunk
    | CustomEvent
    | StateValues
    | RunFinished
    | RunFailed
    | RunCancelled
    | UnknownEvent
)

TERMINAL_KINDS = frozenset({"run_finished", "run_failed", "run_cancelled"})


@dataclasses.dataclass(frozen=True)
class RunEvent:
    run_id: str
    seq: int
    time: datetime | None
    # Subgraph namespace ("node:task_id" parts); empty for the root graph.
    namespace: tuple[str, ...]
    kind: str
    data: EventData

    @property
    def terminal(self) -> bool:
        """True for the run's last event (finished, failed or cancelled)."""
        return self.kind in TERMINAL_KINDS


def _data(msg: events_pb2.RunEvent, kind: str) -> EventData:
    if kind == "run_queued":
        q = msg.run_queued
        return RunQueued(q.session_id, q.graph_id, q.position)
    if kind == "run_started":
        s = msg.run_started
        return RunStarted(s.session_id, s.graph_id, s.attempt, s.replica)
    if kind == "superstep_started":
        ss = msg.superstep_started
        return SuperstepStarted(ss.step, tuple(TaskRef.from_proto(t) for t in ss.tasks))
    if kind == "task_started":
        ts = msg.task_started
        return TaskStarted(ts.step, TaskRef.from_proto(ts.task), decode(ts.input_json))
    if kind == "task_finished":
        tf = msg.task_finished
        return TaskFinished(tf.step, TaskRef.from_proto(tf.task), decode(tf.update_json), tf.duration_seconds)
    if kind == "task_failed":
        tx = msg.task_failed
        return TaskFailed(
            tx.step, TaskRef.from_proto(tx.task), tx.error_type, tx.error_message, tx.duration_seconds
        )
    if kind == "superstep_finished":
        sf = msg.superstep_finished
        return SuperstepFinished(sf.step, sf.checkpoint_id)
    if kind == "interrupt_raised":
        ir = msg.interrupt_raised
        return InterruptRaised(ir.step, Interrupt.many(ir.interrupts))
    if kind == "message_chunk":
        mc = msg.message_chunk
        return MessageChunk(mc.message_id, mc.node, mc.step, decode(mc.chunk_json))
    if kind == "custom":
        return CustomEvent(msg.custom.node, decode(msg.custom.value_json))
    if kind == "state_values":
        return StateValues(msg.state_values.step, decode(msg.state_values.values_json))
    if kind == "run_finished":
        rf = msg.run_finished
        return RunFinished(decode(rf.values_json), Interrupt.many(rf.interrupts))
    if kind == "run_failed":
        return RunFailed(msg.run_failed.error_type, msg.run_failed.error_message)
    if kind == "run_cancelled":
        return RunCancelled(msg.run_cancelled.reason, msg.run_cancelled.rolled_back)
    return UnknownEvent()


def decode_event(msg: events_pb2.RunEvent) -> RunEvent:
    kind = msg.WhichOneof("kind") or "unknown"
    return RunEvent(
        run_id=msg.run_id,
        seq=msg.seq,
        time=timestamp(msg.time, msg.HasField("time")),
        namespace=tuple(msg.namespace),
        kind=kind,
        data=_data(msg, kind),
    )
