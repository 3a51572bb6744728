"""What a caller asks to start a run, and every check of it that needs no lock.

A door (the gRPC servicers, the session stream) translates its message into a
`StartRunRequest` as it came, JSON still text; `Core.start_run` hands it here.
Each check raises a domain error naming the field as the caller's message
names it; the door maps the error to a status code. What depends on the
session's state (a busy session, a pending interrupt, a full queue) is decided
by the run manager under the session's lock (runs.py), with `require_pending_interrupt`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from stepstream.server.core import records as rec
from stepstream.server.core.errors import FailedPrecondition, InvalidArgument
from stepstream.server.core.jsonio import parse_field
from stepstream.server.core.registry import LoadedGraph

RUN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_RECURSION_LIMIT = 100_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandRequest:
    """A Command as sent: resume (one value, or one per interrupt id), update, goto."""

    resume_json: str = ""
    resume_by_interrupt_id_json: Mapping[str, str] = dataclasses.field(default_factory=dict)
    update_json: str = ""
    goto: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptionsRequest:
    max_concurrency: int = 0
    busy_policy: rec.BusyPolicy = rec.BusyPolicy.REJECT
    recursion_limit: int = 0
    configurable_json: str = ""
    metadata_json: str = ""
    interrupt_before: tuple[str, ...] = ()
    interrupt_after: tuple[str, ...] = ()
    # How the caller streams the run (LangGraph's stream modes): a later join naming none
    # gets these.
    stream_modes: tuple[str, ...] = ()
    stream_subgraphs: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartRunRequest:
    owner: str
    # Empty when session_id names the session (then it takes the session's graph).
    graph_id: str = ""
    # Empty: a new session of `graph_id` is created with the run.
    session_id: str = ""
    input_json: str = ""
    command: CommandRequest | None = None
    options: OptionsRequest = OptionsRequest()
    # Caller-chosen id that makes the start safe to retry; empty: a new id.
    run_id: str = ""
    # DELETE: a stateless run, whose session (created with it) is deleted when it ends.
    on_completion: rec.OnCompletion = rec.OnCompletion.KEEP
    # An assistant (or a graph's id, meaning its default assistant) instead of graph_id.
    assistant_id: str = ""
    # The context nodes read through LangGraph's Runtime, a JSON object; empty: none.
    context_json: str = ""
    # A URL POSTed the run when it ends (core/schedules/webhooks.py); empty: none.
    webhook: str = ""
    # Where options, command, context and webhook sit in the caller's message, as errors name them.
    options_field: str = "options"
    command_field: str = "command"
    context_field: str = "context_json"
    webhook_field: str = "webhook"


@dataclasses.dataclass(frozen=True)
class ParsedStart:
    """A start whose fields passed every check: JSON decoded, an empty command dropped."""

    command: rec.CommandSpec | None
    options: rec.RunOptions
    # The run's own context (an assistant's goes under it), None when none was given.
    context: dict[str, Any] | None = None


def parse_start(req: StartRunRequest) -> ParsedStart:
    """Decode and check the request's fields, or raise InvalidArgument naming the first bad one."""
    command = _command(req.command, req.command_field) if req.command is not None else None
    options = parse_options(req.options, req.options_field)
    if req.on_completion is rec.OnCompletion.DELETE:
        if req.session_id:
            raise InvalidArgument(
                "on_completion", "DELETE is for a run that creates its session; give no session_id"
            )
        options = dataclasses.replace(options, on_completion=rec.OnCompletion.DELETE)
    if req.webhook:
        # Whether it may be reached is checked by the core (a DNS lookup: webhooks.py).
        options = dataclasses.replace(options, webhook=req.webhook)
    parse_field("input_json", req.input_json)
    context = parse_field(req.context_field, req.context_json, object_only=True)
    if command is not None and not (command.resumes or command.update is not None or command.goto):
        command = None
    if command is not None and req.input_json:
        raise InvalidArgument("command", "give input_json or a command, not both")
    if req.graph_id and req.assistant_id:
        raise InvalidArgument("assistant_id", "name a graph_id or an assistant_id, not both")
    if not req.session_id:
        if not req.graph_id and not req.assistant_id:
            raise InvalidArgument("graph_id", "is required when no session_id or assistant_id is given")
        if command is not None:
            raise InvalidArgument("command", "needs the session_id of the session to steer")
    if req.run_id and not RUN_ID.match(req.run_id):
        raise InvalidArgument("run_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    return ParsedStart(command, options, context)


def check_nodes(loaded: LoadedGraph, options: rec.RunOptions) -> None:
    """Breakpoints name nodes of the graph."""
    for field, nodes in (
        ("interrupt_before", options.interrupt_before),
        ("interrupt_after", options.interrupt_after),
    ):
        for node in nodes:
            if node not in loaded.nodes:
                raise InvalidArgument(
                    f"options.{field}", f"graph {loaded.spec.graph_id!r} has no node {node!r}"
                )


async def require_pending_interrupt(loaded: LoadedGraph, session_id: str) -> None:
    """A resume needs something to resume: an interrupt pending on the session."""
    state = await loaded.graph.aget_state({"configurable": {"thread_id": session_id}})
    if not state.interrupts:
        raise FailedPrecondition(
            f"session {session_id!r} has no pending interrupt to resume; start a run with input instead"
        )


def parse_options(options: OptionsRequest, field: str) -> rec.RunOptions:
    """The options decoded and checked, or InvalidArgument naming `field`.<name>."""
    if options.recursion_limit > MAX_RECURSION_LIMIT:
        raise InvalidArgument(f"{field}.recursion_limit", f"must be at most {MAX_RECURSION_LIMIT}")
    configurable = parse_field(f"{field}.configurable_json", options.configurable_json, object_only=True)
    metadata = parse_field(f"{field}.metadata_json", options.metadata_json, object_only=True)
    return rec.RunOptions(
        max_concurrency=options.max_concurrency,
        busy_policy=options.busy_policy,
        recursion_limit=options.recursion_limit,
        configurable=configurable or {},
        metadata=metadata or {},
        interrupt_before=options.interrupt_before,
        interrupt_after=options.interrupt_after,
        stream_modes=options.stream_modes,
        stream_subgraphs=options.stream_subgraphs,
    )


def _command(command: CommandRequest, field: str) -> rec.CommandSpec:
    by_id: dict[str, Any] = {
        key: parse_field(f"{field}.resume_by_interrupt_id_json[{key}]", value)
        for key, value in command.resume_by_interrupt_id_json.items()
    }
    if command.resume_json and by_id:
        raise InvalidArgument(field, "set resume_json or resume_by_interrupt_id_json, not both")
    return rec.CommandSpec(
        resume=parse_field(f"{field}.resume_json", command.resume_json),
        has_resume=bool(command.resume_json),
        resume_by_id=by_id,
        update=parse_field(f"{field}.update_json", command.update_json),
        goto=command.goto,
    )
