"""Assistants: each tenant's saved ones and one default per graph (id uuid5 of the graph id, as
LangGraph's server derives it), all kept by the core: created, updated into new versions,
searched, read, and described (schemas, drawable graph, subgraphs)."""

from __future__ import annotations

import json as stdjson
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core import records as rec
from stepstream.server.core.app import Core
from stepstream.server.core.assistants import AssistantFields
from stepstream.server.core.errors import NotFound
from stepstream.server.core.pages import MAX_PAGE_SIZE
from stepstream.server.core.registry import LoadedGraph
from stepstream.server.http import bodies, shapes
from stepstream.server.http.common import core_of, graph_of, json, owner_of
from stepstream.server.http.errors import HttpError

# One page of a paged core listing: (size, token) -> (items, next token). Search and count walk
# a tenant's matching assistants page by page; sorting by a field other than creation time reads
# them all (tenants keep tens of assistants, not millions).
Page = Callable[[int, str], Awaitable[tuple[list[rec.Assistant], str]]]


async def assistant_of(request: Request, assistant_id: str) -> rec.Assistant:
    """The caller's assistant `assistant_id` (a saved one's id, a graph's id, or a default's
    UUID). An id that is neither a saved assistant nor a UUID is a 422, as LangGraph answers."""
    core, owner = core_of(request), owner_of(request)
    try:
        return await core.get_assistant(owner, assistant_id)
    except NotFound:
        graph_of(core, assistant_id)  # a 422 for a name, a 404 for a UUID
        raise


def _shape(core: Core, saved: rec.Assistant) -> dict[str, Any]:
    description = core.graph(saved.graph_id).spec.description if saved.is_default else ""
    return shapes.assistant(saved, description or "")


async def _every(page: Page) -> AsyncIterator[rec.Assistant]:
    token = ""
    while True:
        items, token = await page(MAX_PAGE_SIZE, token)
        for item in items:
            yield item
        if not token:
            return


def _query(graph_id: str | None, name: str | None, metadata: dict[str, Any]) -> rec.AssistantQuery:
    return rec.AssistantQuery(graph_id=graph_id or "", name=name or "", metadata=metadata or None)


async def search(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantSearch)
    core, owner = core_of(request), owner_of(request)
    query = _query(body.graph_id, body.name, body.metadata)
    wanted = body.offset + body.limit
    found: list[rec.Assistant] = []
    more = False
    async for item in _every(lambda size, token: core.search_assistants(owner, query, size, token)):
        if body.sort_by in (None, "created_at") and body.sort_order != "asc" and len(found) == wanted:
            more = True  # newest first is the stored order: stop once the page is full
            break
        found.append(item)
    if body.sort_by not in (None, "created_at") or body.sort_order == "asc":
        key = body.sort_by or "created_at"
        found.sort(key=lambda a: (getattr(a, key), a.assistant_id), reverse=body.sort_order != "asc")
        more = len(found) > wanted
    page = [_shape(core, a) for a in found[body.offset : wanted]]
    if body.select:
        page = [{k: v for k, v in a.items() if k in body.select} for a in page]
    headers = {"X-Pagination-Next": str(wanted)} if more else None
    return json(page, headers=headers)


async def count(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantCount)
    core, owner = core_of(request), owner_of(request)
    query = _query(body.graph_id, body.name, body.metadata)
    total = 0
    async for _ in _every(lambda size, token: core.search_assistants(owner, query, size, token)):
        total += 1
    return json(total)


def _fields(body: bodies.AssistantCreate | bodies.AssistantPatch) -> AssistantFields:
    return AssistantFields(
        name=body.name or "",
        description=body.description or "",
        config=body.config,
        context=body.context,
        metadata=body.metadata,
    )


async def create(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantCreate, empty_ok=False)
    core = core_of(request)
    graph_id = graph_of(core, body.graph_id)
    saved = await core.create_assistant(
        owner_of(request),
        graph_id,
        _fields(body),
        assistant_id=body.assistant_id or "",
        if_exists_return=body.if_exists == "do_nothing",
    )
    return json(_shape(core, saved))


async def patch(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantPatch)
    core = core_of(request)
    current = await assistant_of(request, request.path_params["assistant_id"])
    if body.graph_id and graph_of(core, body.graph_id) != current.graph_id:
        raise HttpError(422, f"graph_id: assistant {current.assistant_id!r} runs graph {current.graph_id!r}")
    saved = await core.update_assistant(owner_of(request), current.assistant_id, _fields(body))
    return json(_shape(core, saved))


async def delete(request: Request) -> Response:
    current = await assistant_of(request, request.path_params["assistant_id"])
    await core_of(request).delete_assistant(owner_of(request), current.assistant_id)
    return Response(status_code=204)


async def versions(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantVersions)
    core, owner = core_of(request), owner_of(request)
    current = await assistant_of(request, request.path_params["assistant_id"])
    found: list[dict[str, Any]] = []
    async for item in _every(
        lambda size, token: core.assistant_versions(owner, current.assistant_id, size, token)
    ):
        if all(item.metadata.get(k) == v for k, v in body.metadata.items()):
            found.append(_shape(core, item))
        if len(found) == body.offset + body.limit:
            break
    return json(found[body.offset :])


async def latest(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantLatest, empty_ok=False)
    core = core_of(request)
    current = await assistant_of(request, request.path_params["assistant_id"])
    saved = await core.set_assistant_version(owner_of(request), current.assistant_id, body.version)
    return json(_shape(core, saved))


async def get(request: Request) -> Response:
    saved = await assistant_of(request, request.path_params["assistant_id"])
    return json(_shape(core_of(request), saved))


async def _loaded(request: Request) -> LoadedGraph:
    saved = await assistant_of(request, request.path_params["assistant_id"])
    return core_of(request).graph(saved.graph_id)


async def schemas(request: Request) -> Response:
    loaded = await _loaded(request)
    texts = loaded.schemas()
    loaded_context = core_of(request).context_schema(loaded.spec.graph_id)
    return json(
        {
            "graph_id": loaded.spec.graph_id,
            "input_schema": stdjson.loads(texts["input"]),
            "output_schema": stdjson.loads(texts["output"]),
            "state_schema": stdjson.loads(texts["state"]),
            "config_schema": None,
            "context_schema": stdjson.loads(loaded_context or "null"),
        }
    )


async def graph(request: Request) -> Response:
    loaded = await _loaded(request)
    xray: Any = request.query_params.get("xray", "false").lower()
    depth: int | bool = int(xray) if xray.isdigit() else xray == "true"
    drawable = await loaded.graph.aget_graph(xray=depth)
    return json(drawable.to_json())


async def subgraphs(request: Request) -> Response:
    loaded = await _loaded(request)
    found: dict[str, Any] = {}
    async for name, sub in loaded.graph.aget_subgraphs(recurse=request.query_params.get("recurse") == "true"):
        found[name] = {
            "input_schema": _schema(sub.get_input_jsonschema),
            "output_schema": _schema(sub.get_output_jsonschema),
            "config_schema": {},
            "context_schema": None,
        }
    return json(found)


def _schema(make: Any) -> Any:
    try:
        return make()
    except Exception:  # a graph whose types have no JSON schema still describes itself
        return None


ROUTES = [
    Route("/assistants", create, methods=["POST"]),
    Route("/assistants/search", search, methods=["POST"]),
    Route("/assistants/count", count, methods=["POST"]),
    Route("/assistants/{assistant_id}", get, methods=["GET"]),
    Route("/assistants/{assistant_id}", patch, methods=["PATCH"]),
    Route("/assistants/{assistant_id}", delete, methods=["DELETE"]),
    Route("/assistants/{assistant_id}/versions", versions, methods=["POST"]),
    Route("/assistants/{assistant_id}/latest", latest, methods=["POST"]),
    Route("/assistants/{assistant_id}/schemas", schemas, methods=["GET"]),
    Route("/assistants/{assistant_id}/graph", graph, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs", subgraphs, methods=["GET"]),
]
