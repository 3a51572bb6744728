"""Assistants: one default per graph (id uuid5 of the graph id, as LangGraph's server derives
it), searched, read, and described (schemas, drawable graph, subgraphs)."""

from __future__ import annotations

import json as stdjson
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core.registry import LoadedGraph
from stepstream.server.http import bodies, shapes
from stepstream.server.http.common import core_of, graph_of, json


def _loaded(request: Request) -> LoadedGraph:
    core = core_of(request)
    return core.graph(graph_of(core, request.path_params["assistant_id"]))


def _matches(loaded: LoadedGraph, graph_id: str | None, name: str | None, metadata: dict[str, Any]) -> bool:
    shape = shapes.assistant(loaded)
    if graph_id and loaded.spec.graph_id != graph_id:
        return False
    if name and name not in shape["name"]:
        return False
    return all(shape["metadata"].get(k) == v for k, v in metadata.items())


async def search(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantSearch)
    found = [
        shapes.assistant(g)
        for g in core_of(request).graphs()
        if _matches(g, body.graph_id, body.name, body.metadata)
    ]
    page = found[body.offset : body.offset + body.limit]
    if body.select:
        page = [{k: v for k, v in a.items() if k in body.select} for a in page]
    return json(page)


async def count(request: Request) -> Response:
    body = await bodies.parse(request, bodies.AssistantCount)
    return json(
        sum(1 for g in core_of(request).graphs() if _matches(g, body.graph_id, body.name, body.metadata))
    )


async def get(request: Request) -> Response:
    return json(shapes.assistant(_loaded(request)))


async def schemas(request: Request) -> Response:
    loaded = _loaded(request)
    texts = loaded.schemas()
    return json(
        {
            "graph_id": loaded.spec.graph_id,
            "input_schema": stdjson.loads(texts["input"]),
            "output_schema": stdjson.loads(texts["output"]),
            "state_schema": stdjson.loads(texts["state"]),
            "config_schema": None,
            "context_schema": None,
        }
    )


async def graph(request: Request) -> Response:
    loaded = _loaded(request)
    xray: Any = request.query_params.get("xray", "false").lower()
    depth: int | bool = int(xray) if xray.isdigit() else xray == "true"
    drawable = await loaded.graph.aget_graph(xray=depth)
    return json(drawable.to_json())


async def subgraphs(request: Request) -> Response:
    loaded = _loaded(request)
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
    Route("/assistants/search", search, methods=["POST"]),
    Route("/assistants/count", count, methods=["POST"]),
    Route("/assistants/{assistant_id}", get, methods=["GET"]),
    Route("/assistants/{assistant_id}/schemas", schemas, methods=["GET"]),
    Route("/assistants/{assistant_id}/graph", graph, methods=["GET"]),
    Route("/assistants/{assistant_id}/subgraphs", subgraphs, methods=["GET"]),
]
