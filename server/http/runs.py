"""Runs: create (background, streamed, waited; on a thread or stateless), list, get, join,
join-stream, cancel. SSE frames come from stream.py; this module only wires requests to the core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core import records as rec
from stepstream.server.core.app import Core
from stepstream.server.core.errors import FailedPrecondition, NotFound, StepstreamError
from stepstream.server.core.events import EventFilter
from stepstream.server.core.jsonio import dumps, loads
from stepstream.server.core.start import CommandRequest, OptionsRequest, StartRunRequest
from stepstream.server.http import bodies, shapes
from stepstream.server.http.assistants import assistant_of
from stepstream.server.http.common import core_of, default_graph, json, owner_of
from stepstream.server.http.errors import HttpError
from stepstream.server.http.stream import StreamTranslator, parse_event_id

log = logging.getLogger(__name__)

# Seconds between heartbeat comments on an idle stream (clients time out after a few missed).
HEARTBEAT_SECONDS = 5.0
# Longest a finished stream waits for its run's row to read ended before it closes anyway.
END_WAIT_SECONDS = 5.0
# Frames that name no seq of ours sort before every stored event.
EVERYTHING: tuple[int, int] = (0, -1)


def _command(body: bodies.RunCreate) -> CommandRequest | None:
    command = body.command
    if command is None:
        return None
    goto: tuple[str, ...] = ()
    if isinstance(command.goto, str):
        goto = (command.goto,)
    elif isinstance(command.goto, list) and all(isinstance(g, str) for g in command.goto):
        goto = tuple(str(g) for g in command.goto)
    elif command.goto is not None:
        raise HttpError(422, "command.goto: Send objects are not served yet; give node names")
    has_resume = "resume" in command.model_fields_set and command.resume is not None
    return CommandRequest(
        resume_json=dumps(command.resume) if has_resume else "",
        update_json=dumps(command.update) if command.update is not None else "",
        goto=goto,
    )


def _nodes(core: Core, graph_id: str, chosen: str | list[str] | None) -> tuple[str, ...]:
    if chosen == "*":
        return tuple(core.graph(graph_id).nodes)
    return tuple(chosen or ())


def _options(core: Core, graph_id: str, assistant_id: str, body: bodies.RunCreate) -> OptionsRequest:
    config = body.config or bodies.RunConfig()
    configurable = dict(config.configurable)
    checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
    if checkpoint_id:
        # LangGraph starts from the checkpoint the configurable names.
        configurable["checkpoint_id"] = str(checkpoint_id)
    # As LangGraph's server does: the run's metadata names its graph and assistant (and so
    # does every checkpoint it writes).
    metadata = {
        "graph_id": graph_id,
        "assistant_id": assistant_id,
        "created_by": "system",
        **(body.metadata or {}),
    }
    return OptionsRequest(
        max_concurrency=config.max_concurrency or 0,
        busy_policy=rec.BusyPolicy(body.multitask_strategy),
        recursion_limit=config.recursion_limit or 0,
        configurable_json=dumps(configurable) if configurable else "",
        metadata_json=dumps(metadata),
        interrupt_before=_nodes(core, graph_id, body.interrupt_before),
        interrupt_after=_nodes(core, graph_id, body.interrupt_after),
        stream_modes=tuple(body.modes()),
        stream_subgraphs=body.stream_subgraphs,
    )


async def _assistant(request: Request, assistant_id: str) -> tuple[str, str]:
    """(graph id, saved assistant id or "") an assistant id names. A graph's id or its default's
    UUID costs no query: the run goes as the graph's default assistant."""
    if (graph_id := default_graph(core_of(request), assistant_id)) is not None:
        return graph_id, ""
    saved = await assistant_of(request, assistant_id)
    return saved.graph_id, saved.assistant_id


async def _start(request: Request, thread_id: str | None) -> tuple[rec.Run, bodies.RunCreate]:
    body = await bodies.parse(request, bodies.RunCreate, empty_ok=False)
    core, owner = core_of(request), owner_of(request)
    graph_id, saved = await _assistant(request, body.assistant_id)
    assistant_id = saved or shapes.assistant_id(graph_id)
    on_completion = rec.OnCompletion.KEEP
    if thread_id is not None:
        try:
            await core.get_session(owner, thread_id)
        except NotFound:
            if body.if_not_exists != "create":
                raise HttpError(404, f"Thread with ID {thread_id} not found") from None
            await core.create_session(owner, "", session_id=thread_id, bind_later=True)
        # A thread takes its graph at its first run, and records it in its metadata.
        meta = {"graph_id": graph_id, "assistant_id": assistant_id}
        await core.bind_session(owner, thread_id, graph_id, meta)
    elif body.on_completion == "delete":
        # A stateless run: the thread made for it goes when it ends (LangGraph's default).
        on_completion = rec.OnCompletion.DELETE
    command = _command(body)
    input_json = "" if body.input is None or command is not None else dumps(body.input)
    request_ = StartRunRequest(
        owner=owner,
        # A saved assistant's settings go under the run's own (the core merges them).
        graph_id="" if saved else graph_id,
        assistant_id=saved,
        session_id=thread_id or "",
        input_json=input_json,
        command=command,
        options=_options(core, graph_id, assistant_id, body),
        on_completion=on_completion,
        options_field="config",
        # Nodes read it through LangGraph's Runtime, checked against the graph's context_schema.
        context_json=dumps(body.context) if body.context is not None else "",
        webhook=body.webhook or "",
    )
    return await core.start_run(request_), body


def _locations(run: rec.Run) -> dict[str, str]:
    base = f"/threads/{run.session_id}/runs/{run.run_id}"
    return {"Location": f"{base}/stream", "Content-Location": base}


def _stream_response(
    request: Request,
    run: rec.Run,
    modes: list[str],
    subgraphs: bool,
    after: tuple[int, int] | None,
    cancel_on_disconnect: bool = False,
) -> Response:
    core, owner = core_of(request), owner_of(request)
    translator = StreamTranslator(run, modes, subgraphs, lambda: core.run_snapshots(owner, run.run_id))

    async def frames() -> AsyncIterator[bytes]:
        ended = False
        try:
            async for batch in core.join_run(owner, run.run_id, 0, EventFilter(None, subgraphs)):
                for event in batch:
                    for seq, index, name, data in await translator.numbered(event):
                        if after is not None and (seq, index) <= after:
                            continue
                        yield _frame(name, data, f"{seq}-{index}")
                    ended = ended or event.terminal
            if ended:
                # The stream closes only once the run reads as ended: langgraph-sdk asks for the
                # run when a stream closes with no `end` event, and reconnects while it still
                # reads running (the last event can reach here before the run's row is written).
                with contextlib.suppress(StepstreamError):
                    await core.wait_run(owner, run.run_id, END_WAIT_SECONDS)
        finally:
            if cancel_on_disconnect and not ended:
                core.run_abandoned(owner, run.run_id)

    return EventSourceResponse(frames(), ping=HEARTBEAT_SECONDS, headers=_locations(run))


def _frame(name: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE frame, its fields in the order LangGraph's server writes them (event, data, id);
    the JSON has no line breaks, so it is one data line."""
    tail = f"id: {event_id}\r\n" if event_id is not None else ""
    return f"event: {name}\r\ndata: {dumps(data)}\r\n{tail}\r\n".encode()


async def _cancel_quietly(core: Any, owner: str, run_id: str) -> None:
    with contextlib.suppress(Exception):
        await core.cancel_run(owner, run_id, rollback=False)


def _thread_param(request: Request) -> str:
    return bodies.check_uuid(request.path_params["thread_id"], "thread")


async def create(request: Request) -> Response:
    thread_id = request.path_params.get("thread_id")
    run, body = await _start(request, bodies.check_uuid(thread_id, "thread") if thread_id else None)
    return json(shapes.run(run, _streamed(body)), headers=_locations(run))


def _streamed(body: bodies.RunCreate) -> dict[str, Any]:
    return {
        "stream_mode": body.modes(),
        "subgraphs": body.stream_subgraphs,
        "resumable": body.stream_resumable,
    }


async def create_stream(request: Request) -> Response:
    thread_id = request.path_params.get("thread_id")
    run, body = await _start(request, bodies.check_uuid(thread_id, "thread") if thread_id else None)
    return _stream_response(
        request, run, body.modes(), body.stream_subgraphs, EVERYTHING, body.on_disconnect == "cancel"
    )


def _result(run: rec.Run) -> Any:
    """What wait and join answer: the run's final values; with pending interrupts, those too;
    a failed run's error."""
    if run.status is rec.RunStatus.FAILED:
        return {"__error__": {"error": run.error_type, "message": run.error_message}}
    values = loads(run.values_json) if run.values_json else None
    if run.interrupts:
        values = {
            **(values if isinstance(values, dict) else {}),
            "__interrupt__": [shapes.interrupt(i) for i in run.interrupts],
        }
    return values


async def create_wait(request: Request) -> Response:
    thread_id = request.path_params.get("thread_id")
    run, _ = await _start(request, bodies.check_uuid(thread_id, "thread") if thread_id else None)
    ended = await core_of(request).wait_run(owner_of(request), run.run_id, None)
    return json(_result(ended), headers=_locations(run))


async def _run_of(request: Request) -> rec.Run:
    """The caller's run on the thread the path names (404 when it is on another thread)."""
    thread_id = _thread_param(request)
    core, owner = core_of(request), owner_of(request)
    await core.get_session(owner, thread_id)
    run_id = bodies.check_uuid(request.path_params["run_id"], "run")
    run = await core.get_run(owner, run_id)
    if run.session_id != thread_id:
        raise NotFound(f"run {run_id!r} not found")
    return run


async def list_runs(request: Request) -> Response:
    thread_id = _thread_param(request)
    core, owner = core_of(request), owner_of(request)
    await core.get_session(owner, thread_id)
    query = request.query_params
    try:
        limit, offset = int(query.get("limit", 10)), int(query.get("offset", 0))
    except ValueError:
        raise HttpError(422, "limit and offset must be whole numbers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise HttpError(422, "limit must be 1-1000 and offset at least 0")
    status = query.get("status")
    if status is not None and status not in shapes.RUN_STATUS_FILTER:
        raise HttpError(422, f"status must be one of {', '.join(shapes.RUN_STATUS_FILTER)}")
    statuses = shapes.RUN_STATUS_FILTER[status] if status else []
    if status and not statuses:
        return json([])
    runs = await core.list_runs_from(owner, thread_id, statuses, limit, offset)
    return json([shapes.run(r) for r in runs])


async def get(request: Request) -> Response:
    return json(shapes.run(await _run_of(request)))


async def join(request: Request) -> Response:
    run = await _run_of(request)
    ended = await core_of(request).wait_run(owner_of(request), run.run_id, None)
    return json(_result(ended))


async def join_stream(request: Request) -> Response:
    try:
        run = await _run_of(request)
    except NotFound:
        # LangGraph's server answers a stream of an unknown run with one `error` event.
        async def missing() -> AsyncIterator[bytes]:
            yield _frame("error", {"error": "NotFound", "message": "404: Run not found"})

        return EventSourceResponse(missing())
    query = request.query_params
    # No modes named: those the run was started with (values if it was not streamed).
    modes = [m for m in query.getlist("stream_mode") if m] or list(run.options.stream_modes) or ["values"]
    for mode in modes:
        if mode not in bodies.STREAM_MODES:
            raise HttpError(422, f"stream_mode {mode!r} is not one of {', '.join(bodies.STREAM_MODES)}")
    subgraphs = query.get("stream_subgraphs", str(run.options.stream_subgraphs)).lower() == "true"
    last_event_id = request.headers.get("last-event-id")
    after: tuple[int, int] | None
    if last_event_id is None:
        # No cursor: only what happens from now on.
        after = (await core_of(request).run_last_seq(owner_of(request), run.run_id), 1 << 30)
    else:
        try:
            after = parse_event_id(last_event_id) or EVERYTHING
        except ValueError:
            raise HttpError(422, f"Last-Event-ID {last_event_id!r} is not an id this server sent") from None
    cancel = query.get("cancel_on_disconnect", "false").lower() == "true"
    return _stream_response(request, run, modes, subgraphs, after, cancel)


async def cancel(request: Request) -> Response:
    run = await _run_of(request)
    query = request.query_params
    wait = query.get("wait", "false").lower() in ("true", "1")
    action = query.get("action", "interrupt")
    if action not in ("interrupt", "rollback"):
        raise HttpError(422, "action must be 'interrupt' or 'rollback'")
    core, owner = core_of(request), owner_of(request)
    if not run.active:
        raise HttpError(404, f"run {run.run_id} has already ended; there is nothing to cancel")
    if not wait:
        asyncio.get_running_loop().create_task(_cancel_quietly(core, owner, run.run_id))
        return Response(status_code=202)
    try:
        await core.cancel_run(owner, run.run_id, rollback=action == "rollback")
    except FailedPrecondition:
        raise HttpError(404, f"run {run.run_id} has already ended; there is nothing to cancel") from None
    return json({})


ROUTES = [
    Route("/runs", create, methods=["POST"]),
    Route("/runs/stream", create_stream, methods=["POST"]),
    Route("/runs/wait", create_wait, methods=["POST"]),
    Route("/threads/{thread_id}/runs", create, methods=["POST"]),
    Route("/threads/{thread_id}/runs", list_runs, methods=["GET"]),
    Route("/threads/{thread_id}/runs/stream", create_stream, methods=["POST"]),
    Route("/threads/{thread_id}/runs/wait", create_wait, methods=["POST"]),
    Route("/threads/{thread_id}/runs/{run_id}", get, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/join", join, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/stream", join_stream, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/cancel", cancel, methods=["POST"]),
]
