"""The JSON bodies the clients send, as pydantic models: a body that does not fit is a 422
naming the field, before anything reaches the core."""

from __future__ import annotations

import uuid
from typing import Any, Literal, TypeVar

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from stepstream.server.http.errors import HttpError

StreamMode = Literal[
    "values", "updates", "messages", "messages-tuple", "custom", "tasks", "checkpoints", "debug", "events"
]
STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "tasks",
    "checkpoints",
    "debug",
    "events",
)
MultitaskStrategy = Literal["reject", "rollback", "interrupt", "enqueue"]
ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
M = TypeVar("M", bound=BaseModel)
RunStatus = Literal["pending", "running", "error", "success", "timeout", "interrupted"]


class _Body(BaseModel):
    # Fields a newer client sends that this server does not know are ignored, as LangGraph's does.
    model_config = ConfigDict(extra="ignore")


class CommandBody(_Body):
    resume: Any = None
    update: Any = None
    goto: str | list[str] | dict[str, Any] | list[dict[str, Any]] | None = None


class RunConfig(_Body):
    model_config = ConfigDict(extra="allow")
    configurable: dict[str, Any] = Field(default_factory=dict)
    recursion_limit: int | None = Field(default=None, ge=1, le=100_000)
    max_concurrency: int | None = Field(default=None, ge=1)
    tags: list[str] = Field(default_factory=list)


class RunCreate(_Body):
    assistant_id: str = Field(min_length=1, max_length=256)
    input: dict[str, Any] | list[Any] | str | int | float | bool | None = None
    command: CommandBody | None = None
    stream_mode: StreamMode | list[StreamMode] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    on_disconnect: Literal["cancel", "continue"] = "continue"
    multitask_strategy: MultitaskStrategy = "enqueue"
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    config: RunConfig | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    if_not_exists: Literal["create", "reject"] = "reject"
    # Stateless runs only: "delete" removes the thread made for the run once it ends.
    on_completion: Literal["delete", "keep"] = "delete"
    after_seconds: float | None = Field(default=None, ge=0)
    # POSTed the run when it ends (docs/webhooks.md); a destination not allowed is a 422.
    webhook: str | None = Field(default=None, max_length=2048)

    def modes(self) -> list[str]:
        chosen = [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)
        return list(dict.fromkeys(chosen)) or ["values"]


class ThreadCreate(_Body):
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    graph_id: str | None = None


class ThreadPatch(_Body):
    metadata: dict[str, Any] | None = None


class ThreadSearch(_Body):
    ids: list[str] | None = None
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class ThreadCount(_Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None


class StateUpdate(_Body):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None


class CheckpointQuery(_Body):
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    subgraphs: bool = False


class HistoryQuery(_Body):
    limit: int = Field(default=10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None


class AssistantSearch(_Body):
    graph_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class AssistantCreate(_Body):
    graph_id: str = Field(min_length=1)
    assistant_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = None
    description: str | None = None


class AssistantPatch(_Body):
    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantVersions(_Body):
    metadata: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class AssistantLatest(_Body):
    version: int = Field(ge=1)


class AssistantCount(_Body):
    graph_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None


async def parse(request: Request, model: type[M], *, empty_ok: bool = True) -> M:
    """The request's JSON body as `model`; 422 with the first problem if it is not."""
    raw = await request.body()
    if not raw.strip():
        if empty_ok:
            return model()
        raise HttpError(422, "a JSON body is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HttpError(422, "Invalid JSON in request body") from None
    if not isinstance(data, dict):
        raise HttpError(422, f"the body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise HttpError(422, f"{where}: {first['msg']}") from None


def check_uuid(value: str, what: str) -> str:
    """LangGraph's API names threads, runs and assistants by UUID; anything else is a 422."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise HttpError(422, f"Invalid {what} ID: must be a UUID") from None
    return value
