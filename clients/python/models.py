"""Read-only views of the contract's resources, with JSON fields decoded.

Each is a frozen dataclass built from its proto message by a `from_proto`
classmethod, so callers never touch generated code or JSON text.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Generic, TypeVar

from google.protobuf import timestamp_pb2

from stepstream.client.jsonio import Json, decode
from stepstream.client.options import RunOptions
from stepstream.v1 import assistants_pb2, common_pb2, graphs_pb2, runs_pb2, sessions_pb2

T = TypeVar("T")


def timestamp(value: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    """A proto Timestamp as an aware UTC datetime; None when the field is unset."""
    return value.ToDatetime(tzinfo=UTC) if present else None


class RunStatus(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in _ENDED

    def to_proto(self) -> runs_pb2.RunStatus.ValueType:
        return runs_pb2.RunStatus.Value(f"RUN_STATUS_{self.name}")

    @classmethod
    def from_proto(cls, value: int) -> RunStatus:
        return cls[runs_pb2.RunStatus.Name(value).removeprefix("RUN_STATUS_")]  # type: ignore[arg-type]


_ENDED = frozenset({RunStatus.SUCCEEDED, RunStatus.INTERRUPTED, RunStatus.FAILED, RunStatus.CANCELLED})


class SessionStatus(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"

    @classmethod
    def from_proto(cls, value: int) -> SessionStatus:
        name = sessions_pb2.SessionStatus.Name(value)  # type: ignore[arg-type]
        return cls[name.removeprefix("SESSION_STATUS_")]


@dataclasses.dataclass(frozen=True)
class TaskRef:
    task_id: str
    node: str
    namespace: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, msg: common_pb2.TaskRef) -> TaskRef:
        return cls(msg.task_id, msg.node, tuple(msg.namespace))


@dataclasses.dataclass(frozen=True)
class Interrupt:
    interrupt_id: str
    # The value given to interrupt() in the node, decoded.
    value: Json
    namespace: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, msg: common_pb2.Interrupt) -> Interrupt:
        return cls(msg.interrupt_id, decode(msg.value_json), tuple(msg.namespace))

    @classmethod
    def many(cls, msgs: Iterable[common_pb2.Interrupt]) -> tuple[Interrupt, ...]:
        return tuple(cls.from_proto(m) for m in msgs)


@dataclasses.dataclass(frozen=True)
class Graph:
    graph_id: str
    description: str
    input_schema: Json
    output_schema: Json
    state_schema: Json
    nodes: tuple[str, ...]
    default_max_concurrency: int
    # JSON Schema of the context its nodes read through LangGraph's Runtime (None: none declared).
    context_schema: Json = None
    # Its default assistant's id (its own id is accepted too wherever an assistant id is).
    default_assistant_id: str = ""

    @classmethod
    def from_proto(cls, msg: graphs_pb2.Graph) -> Graph:
        return cls(
            graph_id=msg.graph_id,
            description=msg.description,
            input_schema=decode(msg.input_schema_json),
            output_schema=decode(msg.output_schema_json),
            state_schema=decode(msg.state_schema_json),
            nodes=tuple(msg.nodes),
            default_max_concurrency=msg.default_max_concurrency,
            context_schema=decode(msg.context_schema_json),
            default_assistant_id=msg.default_assistant_id,
        )


@dataclasses.dataclass(frozen=True)
class Session:
    session_id: str
    graph_id: str
    status: SessionStatus
    metadata: Json
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_proto(cls, msg: sessions_pb2.Session) -> Session:
        return cls(
            session_id=msg.session_id,
            graph_id=msg.graph_id,
            status=SessionStatus.from_proto(msg.status),
            metadata=decode(msg.metadata_json),
            created_at=timestamp(msg.created_at, msg.HasField("created_at")),
            updated_at=timestamp(msg.updated_at, msg.HasField("updated_at")),
        )


@dataclasses.dataclass(frozen=True)
class SessionState:
    values: Json
    next: tuple[str, ...]
    next_tasks: tuple[TaskRef, ...]
    interrupts: tuple[Interrupt, ...]
    checkpoint_id: str
    parent_checkpoint_id: str
    step: int
    source: str
    created_at: datetime | None
    run_id: str

    @classmethod
    def from_proto(cls, msg: sessions_pb2.SessionState) -> SessionState:
        return cls(
            values=decode(msg.values_json),
            next=tuple(msg.next),
            next_tasks=tuple(TaskRef.from_proto(t) for t in msg.next_tasks),
            interrupts=Interrupt.many(msg.interrupts),
            checkpoint_id=msg.checkpoint_id,
            parent_checkpoint_id=msg.parent_checkpoint_id,
            step=msg.step,
            source=msg.source,
            created_at=timestamp(msg.created_at, msg.HasField("created_at")),
            run_id=msg.run_id,
        )


@dataclasses.dataclass(frozen=True)
class Run:
    run_id: str
    session_id: str
    graph_id: str
    status: RunStatus
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    attempt: int
    last_seq: int
    # Final state values once ended (None before).
    values: Json
    interrupts: tuple[Interrupt, ...]
    error_type: str
    error_message: str
    # The options the run was started with, as the server echoes them.
    options: RunOptions
    # The assistant it ran as (a graph's default when it named only a graph) and that
    # assistant's version (0: no saved settings applied); its context (None: none).
    assistant_id: str = ""
    assistant_version: int = 0
    context: Json = None
    # Its trace's W3C id (look it up in Jaeger); "" when the run is not traced.
    trace_id: str = ""

    @property
    def ended(self) -> bool:
        return self.status.ended

    @classmethod
    def from_proto(cls, msg: runs_pb2.Run) -> Run:
        return cls(
            run_id=msg.run_id,
            session_id=msg.session_id,
            graph_id=msg.graph_id,
            status=RunStatus.from_proto(msg.status),
            created_at=timestamp(msg.created_at, msg.HasField("created_at")),
            started_at=timestamp(msg.started_at, msg.HasField("started_at")),
            ended_at=timestamp(msg.ended_at, msg.HasField("ended_at")),
            attempt=msg.attempt,
            last_seq=msg.last_seq,
            values=decode(msg.values_json),
            interrupts=Interrupt.many(msg.interrupts),
            error_type=msg.error_type,
            error_message=msg.error_message,
            options=RunOptions.from_proto(msg.options),
            assistant_id=msg.assistant_id,
            assistant_version=msg.assistant_version,
            context=decode(msg.context_json),
            trace_id=msg.trace_id,
        )


@dataclasses.dataclass(frozen=True)
class Assistant:
    """A graph with saved settings, as one version of it has them."""

    assistant_id: str
    graph_id: str
    name: str
    description: str
    # LangGraph's `configurable` values, the context and the metadata every run of it gets.
    config: Json
    context: Json
    metadata: Json
    version: int
    created_at: datetime | None
    updated_at: datetime | None
    is_default: bool

    @classmethod
    def from_proto(cls, msg: assistants_pb2.Assistant) -> Assistant:
        return cls(
            assistant_id=msg.assistant_id,
            graph_id=msg.graph_id,
            name=msg.name,
            description=msg.description,
            config=decode(msg.config_json),
            context=decode(msg.context_json),
            metadata=decode(msg.metadata_json),
            version=msg.version,
            created_at=timestamp(msg.created_at, msg.HasField("created_at")),
            updated_at=timestamp(msg.updated_at, msg.HasField("updated_at")),
            is_default=msg.is_default,
        )


@dataclasses.dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `next_page_token` is "" on the last page."""

    items: tuple[T, ...]
    next_page_token: str

    @property
    def last(self) -> bool:
        return not self.next_page_token


async def iter_pages(fetch: Callable[[str], Awaitable[Page[T]]]) -> AsyncGenerator[Page[T], None]:
    """Every page of a listing, fetching the next one only when asked for."""
    token = ""
    while True:
        page = await fetch(token)
        yield page
        if page.last:
            return
        token = page.next_page_token


async def iter_items(
    fetch: Callable[[str], Awaitable[Page[T]]], limit: int | None = None
) -> AsyncGenerator[T, None]:
    """The items of every page in order, stopping after `limit` items when given."""
    if limit is not None and limit <= 0:
        return
    count = 0
    async for page in iter_pages(fetch):
        for item in page.items:
            yield item
            count += 1
            if limit is not None and count >= limit:
                return
