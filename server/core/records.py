"""Session and run records as the core hands them to the API layer."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


# String enums: the database stores each member's value, the same strings as ever.
class RunStatus(enum.StrEnum):
    """runs.status; the first two are "active"."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SessionStatus(enum.StrEnum):
    """sessions.status."""

    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class BusyPolicy(enum.StrEnum):
    """What starting a run on a session with an active run does (common.proto BusyPolicy)."""

    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"


class OnCompletion(enum.StrEnum):
    """What happens to the session a run created once the run ends (runs.proto OnCompletion)."""

    KEEP = "keep"
    # A stateless run: its session (checkpoints, runs, events) is deleted when it ends.
    DELETE = "delete"


class SessionSort(enum.StrEnum):
    """The order sessions are listed in (sessions.proto SessionSortBy)."""

    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SessionQuery:
    """Which of an owner's sessions to list, in what order: every filter given must hold."""

    # JSON containment: each key's value is contained in the session's (objects by key, lists
    # by members, scalars equal), as PostgreSQL's `@>` decides.
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    statuses: tuple[SessionStatus, ...] = ()
    graph_id: str = ""
    session_ids: tuple[str, ...] = ()
    sort: SessionSort = SessionSort.CREATED_AT
    ascending: bool = False
    limit: int = 50
    offset: int = 0


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
ENDED = (RunStatus.SUCCEEDED, RunStatus.INTERRUPTED, RunStatus.FAILED, RunStatus.CANCELLED)
# A session's status once its last active run ended with the given status.
SESSION_STATUS_AFTER = {
    RunStatus.SUCCEEDED: SessionStatus.IDLE,
    RunStatus.INTERRUPTED: SessionStatus.INTERRUPTED,
    RunStatus.FAILED: SessionStatus.ERROR,
    RunStatus.CANCELLED: SessionStatus.IDLE,
}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    max_concurrency: int = 0
    busy_policy: BusyPolicy = BusyPolicy.REJECT
    recursion_limit: int = 0
    configurable: dict[str, Any] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    interrupt_before: tuple[str, ...] = ()
    interrupt_after: tuple[str, ...] = ()
    # How the client that started the run asked to stream it (LangGraph's stream modes, HTTP
    # door): a later join that names no modes gets these.
    stream_modes: tuple[str, ...] = ()
    stream_subgraphs: bool = False
    on_completion: OnCompletion = OnCompletion.KEEP
    # URL POSTed the run when it ends (core/schedules/webhooks.py); empty: none.
    webhook: str = ""

    def to_json(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies and showed up in profiles of run starts.
        return {
            "max_concurrency": self.max_concurrency,
            "busy_policy": self.busy_policy,
            "recursion_limit": self.recursion_limit,
            "configurable": self.configurable,
            "metadata": self.metadata,
            "interrupt_before": self.interrupt_before,
            "interrupt_after": self.interrupt_after,
            "stream_modes": self.stream_modes,
            "stream_subgraphs": self.stream_subgraphs,
            "on_completion": self.on_completion,
            "webhook": self.webhook,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunOptions:
        raw = dict(raw)
        raw["interrupt_before"] = tuple(raw.get("interrupt_before", ()))
        raw["interrupt_after"] = tuple(raw.get("interrupt_after", ()))
        raw["stream_modes"] = tuple(raw.get("stream_modes", ()))
        if "busy_policy" in raw:
            raw["busy_policy"] = BusyPolicy(raw["busy_policy"])
        if "on_completion" in raw:
            raw["on_completion"] = OnCompletion(raw["on_completion"])
        return cls(**raw)


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    """A client's Command, JSON-decoded (resume, update, goto)."""

    resume: Any = None
    has_resume: bool = False
    resume_by_id: dict[str, Any] = dataclasses.field(default_factory=dict)
    update: Any = None
    goto: tuple[str, ...] = ()

    @property
    def resumes(self) -> bool:
        return self.has_resume or bool(self.resume_by_id)


@dataclasses.dataclass(frozen=True)
class Session:
    session_id: str
    owner: str
    graph_id: str
    status: SessionStatus
    metadata: dict[str, Any]
    created_at: float
    updated_at: float


@dataclasses.dataclass(frozen=True)
class Run:
    run_id: str
    owner: str
    session_id: str
    graph_id: str
    status: RunStatus
    options: RunOptions
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    attempt: int = 0
    last_seq: int = 0
    values_json: str = ""
    interrupts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error_type: str = ""
    error_message: str = ""
    input_json: str | None = None
    command_json: str | None = None
    # W3C trace context of the run (JSON; see core/tracing.py), so a resumed run continues its trace.
    trace_context: str | None = None
    # The run's context (JSON object text: its own over its assistant's), as nodes read it through
    # LangGraph's Runtime; stored, so whichever replica resumes the run passes the same.
    context_json: str | None = None
    # The assistant it ran as, and that assistant's version (0: it named only a graph, so no
    # saved settings applied; assistant_id is then the graph's default assistant).
    assistant_id: str = ""
    assistant_version: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclasses.dataclass(frozen=True)
class Assistant:
    """A graph with saved settings, as one version has them (the live one, unless listed)."""

    assistant_id: str
    owner: str
    graph_id: str
    name: str
    description: str
    # LangGraph's `configurable` values, the per-run context and free-form metadata.
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: float
    updated_at: float
    is_default: bool = False


@dataclasses.dataclass(frozen=True)
class AssistantChanges:
    """What an update sets; None keeps the live version's value."""

    name: str | None = None
    description: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class AssistantQuery:
    """A search of a tenant's assistants: each filter applies when set."""

    graph_id: str = ""
    # Every key with an equal value (nested objects compared the same way).
    metadata: dict[str, Any] | None = None
    # A part of the name.
    name: str = ""
