"""The long-term Store in LangGraph's HTTP API (the paths and bodies langgraph_sdk's store client
sends), for the caller's tenant, through the core's store operations (core/longterm.py).

A missing item is 200 with `null`, as LangGraph's server answers it (the gRPC door says
NOT_FOUND); a bad namespace, value or filter is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.store.base import Item, SearchItem
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core.errors import NotFound
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.longterm import ListNamespaces, PutItem, SearchItems
from stepstream.server.http import bodies
from stepstream.server.http.common import core_of, json, owner_of
from stepstream.server.http.errors import HttpError


class _Body(BaseModel):
    # Fields a newer client sends that this server does not know are ignored, as LangGraph's does.
    model_config = ConfigDict(extra="ignore")


class StorePut(_Body):
    namespace: list[str]
    key: str
    value: dict[str, Any]
    index: Literal[False] | list[str] | None = None
    ttl: float | None = None


class StoreDelete(_Body):
    namespace: list[str]
    key: str


class StoreSearch(_Body):
    namespace_prefix: list[str] | None = None
    filter: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    query: str | None = None
    refresh_ttl: bool | None = None


class StoreNamespaces(_Body):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = Field(default=None, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


def item_json(item: Item) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
    }
    if isinstance(item, SearchItem):
        shown["score"] = item.score
    return shown


def _flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise HttpError(422, f"{name}: must be true or false, got {raw!r}")


async def put_item(request: Request) -> Response:
    body = await bodies.parse(request, StorePut, empty_ok=False)
    put = PutItem(
        namespace=tuple(body.namespace),
        key=body.key,
        value_json=dumps(body.value),
        index_fields=tuple(body.index) if body.index else (),
        no_index=body.index is False,
        ttl_minutes=body.ttl,
    )
    await core_of(request).longterm.put(owner_of(request), put)
    return Response(status_code=204)


async def get_item(request: Request) -> Response:
    params = request.query_params
    namespace, key = params.get("namespace"), params.get("key")
    if namespace is None or key is None:
        raise HttpError(422, "namespace and key are required query parameters")
    refresh = _flag(request, "refresh_ttl")
    try:
        item = await core_of(request).longterm.get(
            owner_of(request), tuple(namespace.split(".")), key, refresh_ttl=refresh is not False
        )
    except NotFound:
        return json(None)
    return json(item_json(item))


async def delete_item(request: Request) -> Response:
    body = await bodies.parse(request, StoreDelete, empty_ok=False)
    await core_of(request).longterm.delete(owner_of(request), tuple(body.namespace), body.key)
    return Response(status_code=204)


async def search_items(request: Request) -> Response:
    body = await bodies.parse(request, StoreSearch)
    search = SearchItems(
        namespace_prefix=tuple(body.namespace_prefix or ()),
        filter_json=dumps(body.filter) if body.filter is not None else "",
        query=body.query or "",
        limit=body.limit,
        offset=body.offset,
        refresh_ttl=body.refresh_ttl is not False,
    )
    found = await core_of(request).longterm.search(owner_of(request), search)
    return json({"items": [item_json(item) for item in found]})


async def list_namespaces(request: Request) -> Response:
    body = await bodies.parse(request, StoreNamespaces)
    listing = ListNamespaces(
        prefix=tuple(body.prefix or ()),
        suffix=tuple(body.suffix or ()),
        max_depth=body.max_depth or 0,
        limit=body.limit,
        offset=body.offset,
    )
    found = await core_of(request).longterm.list_namespaces(owner_of(request), listing)
    return json({"namespaces": [list(namespace) for namespace in found]})


ROUTES = [
    Route("/store/items", put_item, methods=["PUT"]),
    Route("/store/items", get_item, methods=["GET"]),
    Route("/store/items", delete_item, methods=["DELETE"]),
    Route("/store/items/search", search_items, methods=["POST"]),
    Route("/store/namespaces", list_namespaces, methods=["POST"]),
]
