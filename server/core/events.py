"""Run events as the core knows them, and how they are stored.

`data` holds exactly the fields of the matching message in events.proto
(fields ending in `_json` already hold JSON text), so the API layer maps an
event to protobuf without knowing each kind, and a stored event replays as
it was first sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import orjson

from stepstream.server.core.jsonio import dumps

RUN_QUEUED = "run_queued"
RUN_STARTED = "run_started"
SUPERSTEP_STARTED = "superstep_started"
TASK_STARTED = "task_started"
TASK_FINISHED = "task_finished"
TASK_FAILED = "task_failed"
SUPERSTEP_FINISHED = "superstep_finished"
INTERRUPT_RAISED = "interrupt_raised"
MESSAGE_CHUNK = "message_chunk"
CUSTOM = "custom"
STATE_VALUES = "state_values"
RUN_FINISHED = "run_finished"
RUN_FAILED = "run_failed"
RUN_CANCELLED = "run_cancelled"

TERMINAL_KINDS = frozenset({RUN_FINISHED, RUN_FAILED, RUN_CANCELLED})

# Event kinds a client can choose (events.proto EventKind); the others are always sent.
SELECTABLE: dict[str, frozenset[str]] = {
    "supersteps": frozenset({SUPERSTEP_STARTED, SUPERSTEP_FINISHED}),
    "tasks": frozenset({TASK_STARTED, TASK_FINISHED, TASK_FAILED}),
    "message_chunks": frozenset({MESSAGE_CHUNK}),
    "custom": frozenset({CUSTOM}),
    "values": frozenset({STATE_VALUES}),
}
ALWAYS_SENT = frozenset({RUN_QUEUED, RUN_STARTED, INTERRUPT_RAISED}) | TERMINAL_KINDS

Namespace = tuple[str, ...]
# An event before it is numbered and stored: (kind, namespace, data).
EventItem = tuple[str, Namespace, dict[str, Any]]


def interrupt_dicts(interrupts: Iterable[Any] | None, namespace: Namespace = ()) -> list[dict[str, Any]]:
    """Interrupts as events.proto's Interrupt: LangGraph's Interrupt objects, or their dict form."""
    out = []
    for item in interrupts or ():
        value = item.get("value") if isinstance(item, dict) else getattr(item, "value", None)
        ident = item.get("id") if isinstance(item, dict) else getattr(item, "id", "")
        out.append({"interrupt_id": ident or "", "value_json": dumps(value), "namespace": list(namespace)})
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class RunEvent:
    run_id: str
    seq: int
    time: float
    kind: str
    namespace: tuple[str, ...]
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    def body(self) -> bytes:
        return orjson.dumps({"t": self.time, "ns": self.namespace, "d": self.data})

    @classmethod
    def from_row(cls, run_id: str, seq: int, kind: str, body: bytes) -> RunEvent:
        decoded = orjson.loads(body)
        return cls(run_id, seq, decoded["t"], kind, tuple(decoded["ns"]), decoded["d"])


@dataclasses.dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber receives: chosen kinds, and subgraph events or not."""

    kinds: frozenset[str] | None = None
    subgraphs: bool = False

    @classmethod
    def of(cls, selectable: Iterable[str], subgraphs: bool) -> EventFilter:
        chosen = [SELECTABLE[name] for name in selectable]
        kinds = frozenset().union(*chosen) | ALWAYS_SENT if chosen else None
        return cls(kinds, subgraphs)

    def accepts(self, event: RunEvent) -> bool:
        if event.namespace and not self.subgraphs and not event.terminal:
            return False
        return self.kinds is None or event.kind in self.kinds
