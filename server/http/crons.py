"""Crons as LangGraph's clients call them (`client.crons`): on a thread, or a new thread per
fire; searched, counted, changed and deleted. The core's crons (core/schedules) decide
everything; this translates the bodies and the answers."""

from __future__ import annotations

import datetime
from typing import Any, Literal

import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core import records as rec
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.pages import MAX_PAGE_SIZE
from stepstream.server.core.schedules.records import Cron, CronSpec
from stepstream.server.core.start import OptionsRequest, parse_options
from stepstream.server.http import bodies, shapes
from stepstream.server.http.common import core_of, graph_of, json, owner_of, session_of


class CronCreate(bodies._Body):
    assistant_id: str = Field(min_length=1, max_length=256)
    # A cron expression: 5 fields, or 6 with leading seconds.
    schedule: str = Field(min_length=1, max_length=256)
    input: dict[str, Any] | list[Any] | str | int | float | bool | None = None
    metadata: dict[str, Any] | None = None
    config: bodies.RunConfig | None = None
    context: dict[str, Any] | None = None
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None
    webhook: str | None = None
    multitask_strategy: bodies.MultitaskStrategy = "enqueue"
    end_time: datetime.datetime | None = None
    enabled: bool = True
    timezone: str | None = None


class CronPatch(bodies._Body):
    schedule: str | None = Field(default=None, min_length=1, max_length=256)
    input: dict[str, Any] | list[Any] | str | int | float | bool | None = None
    metadata: dict[str, Any] | None = None
    config: bodies.RunConfig | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    end_time: datetime.datetime | None = None
    enabled: bool | None = None
    timezone: str | None = None


class CronSearch(bodies._Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    limit: int = Field(default=10, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal[
        "cron_id", "assistant_id", "thread_id", "created_at", "updated_at", "next_run_date", "end_time"
    ] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[str] | None = None


def _options(graph_id: str, body: CronCreate) -> rec.RunOptions:
    config = body.config or bodies.RunConfig()
    # As for runs (runs.py): each run's metadata names its graph and assistant.
    metadata = {"graph_id": graph_id, "assistant_id": shapes.assistant_id(graph_id), **(body.metadata or {})}
    request = OptionsRequest(
        max_concurrency=config.max_concurrency or 0,
        busy_policy=rec.BusyPolicy(body.multitask_strategy),
        recursion_limit=config.recursion_limit or 0,
        configurable_json=dumps(config.configurable) if config.configurable else "",
        metadata_json=dumps(metadata),
        interrupt_before=tuple(body.interrupt_before or ()),
        interrupt_after=tuple(body.interrupt_after or ()),
    )
    return parse_options(request, "config")


def _spec(graph_id: str, thread_id: str, body: CronCreate) -> CronSpec:
    return CronSpec(
        cron=body.schedule,
        timezone=body.timezone or "",
        graph_id=graph_id,
        session_id=thread_id,
        input_json=dumps(body.input) if body.input is not None else "",
        context_json=dumps(body.context) if body.context is not None else "",
        options=_options(graph_id, body),
        webhook=body.webhook or "",
        end_at=body.end_time.timestamp() if body.end_time else None,
    )


def cron_shape(cron: Cron) -> dict[str, Any]:
    spec = cron.spec
    payload: dict[str, Any] = {
        "input": None if not spec.input_json else _loads(spec.input_json),
        "config": {"configurable": spec.options.configurable},
        "context": None if not spec.context_json else _loads(spec.context_json),
        "metadata": spec.options.metadata,
        "multitask_strategy": spec.options.busy_policy.value,
        "interrupt_before": list(spec.options.interrupt_before),
        "interrupt_after": list(spec.options.interrupt_after),
        "webhook": spec.webhook or None,
    }
    return {
        "cron_id": cron.cron_id,
        "assistant_id": shapes.assistant_id(spec.graph_id),
        "thread_id": spec.session_id or None,
        "on_run_completed": None,
        "end_time": shapes.iso(spec.end_at),
        "schedule": spec.cron or f"every {spec.interval_seconds:g} s",
        "timezone": spec.timezone or None,
        "created_at": shapes.iso(cron.created_at),
        "updated_at": shapes.iso(cron.updated_at),
        "payload": payload,
        "user_id": None,
        "next_run_date": shapes.iso(cron.next_fire_times[0]) if cron.next_fire_times else None,
        "metadata": spec.options.metadata,
        "enabled": not cron.paused,
    }


def _loads(text: str) -> Any:
    return orjson.loads(text)


async def _create(request: Request, thread_id: str, bind: bool = False) -> Response:
    body = await bodies.parse(request, CronCreate, empty_ok=False)
    core, owner = core_of(request), owner_of(request)
    graph_id = graph_of(core, body.assistant_id)
    if bind:
        # A thread takes its graph at its first run (runs.py); a cron's runs are its runs.
        meta = {"graph_id": graph_id, "assistant_id": shapes.assistant_id(graph_id)}
        await core.bind_session(owner, thread_id, graph_id, meta)
    cron = await core.crons.create(owner, _spec(graph_id, thread_id, body), paused=not body.enabled)
    return json(cron_shape(cron))


async def create_for_thread(request: Request) -> Response:
    thread_id = bodies.check_uuid(request.path_params["thread_id"], "thread")
    await session_of(request, thread_id)  # 404 for a thread the caller does not have
    return await _create(request, thread_id, bind=True)


async def create(request: Request) -> Response:
    return await _create(request, "")


async def _all(request: Request, thread_id: str) -> list[Cron]:
    return await core_of(request).crons.list_crons(owner_of(request), thread_id, MAX_PAGE_SIZE, None)


def _matches(cron: Cron, assistant: str | None, enabled: bool | None) -> bool:
    if assistant and assistant not in (cron.spec.graph_id, shapes.assistant_id(cron.spec.graph_id)):
        return False
    return enabled is None or enabled != cron.paused


async def search(request: Request) -> Response:
    body = await bodies.parse(request, CronSearch)
    found = [
        cron_shape(c)
        for c in await _all(request, body.thread_id or "")
        if _matches(c, body.assistant_id, body.enabled)
    ]
    found.sort(
        key=lambda c: (c[body.sort_by] is None, c[body.sort_by] or ""), reverse=body.sort_order == "desc"
    )
    page = found[body.offset : body.offset + body.limit]
    if body.select:
        page = [{k: v for k, v in c.items() if k in body.select} for c in page]
    return json(page)


async def count(request: Request) -> Response:
    body = await bodies.parse(request, CronSearch)
    crons = await _all(request, body.thread_id or "")
    return json(sum(1 for c in crons if _matches(c, body.assistant_id, None)))


async def patch(request: Request) -> Response:
    body = await bodies.parse(request, CronPatch)
    core, owner = core_of(request), owner_of(request)
    cron_id = request.path_params["cron_id"]
    cron = await core.crons.get(owner, cron_id)
    changes = body.model_dump(exclude_unset=True)
    if set(changes) - {"enabled"}:
        old = cron.spec
        merged = CronCreate(
            assistant_id=old.graph_id,
            schedule=body.schedule or old.cron,
            input=body.input if "input" in changes else (_loads(old.input_json) if old.input_json else None),
            metadata=body.metadata if body.metadata is not None else old.options.metadata,
            config=body.config or bodies.RunConfig(configurable=old.options.configurable),
            context=body.context
            if "context" in changes
            else (_loads(old.context_json) if old.context_json else None),
            interrupt_before=list(old.options.interrupt_before),
            interrupt_after=list(old.options.interrupt_after),
            webhook=body.webhook if "webhook" in changes else old.webhook,
            multitask_strategy=old.options.busy_policy.value,  # type: ignore[arg-type]
            end_time=body.end_time if "end_time" in changes else _when(old.end_at),
            timezone=body.timezone if "timezone" in changes else old.timezone,
        )
        cron = await core.crons.update(owner, cron_id, _spec(old.graph_id, old.session_id, merged))
    if body.enabled is not None and body.enabled == cron.paused:
        cron = await (core.crons.resume if body.enabled else core.crons.pause)(owner, cron_id)
    return json(cron_shape(cron))


def _when(seconds: float | None) -> datetime.datetime | None:
    return None if seconds is None else datetime.datetime.fromtimestamp(seconds, datetime.UTC)


async def delete(request: Request) -> Response:
    await core_of(request).crons.delete(owner_of(request), request.path_params["cron_id"])
    return Response(status_code=204)


ROUTES = [
    Route("/threads/{thread_id}/runs/crons", create_for_thread, methods=["POST"]),
    Route("/runs/crons", create, methods=["POST"]),
    Route("/runs/crons/search", search, methods=["POST"]),
    Route("/runs/crons/count", count, methods=["POST"]),
    Route("/runs/crons/{cron_id}", patch, methods=["PATCH"]),
    Route("/runs/crons/{cron_id}", delete, methods=["DELETE"]),
]
