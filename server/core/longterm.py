"""The long-term Store as the core offers it: to runs (a tenant's view, for the graph's runtime)
and to the doors (put, get, delete, search, list namespaces, for the caller's tenant).

The store itself is LangGraph's `BaseStore` on the server's database
(server/storage/store/); the core sees it through `ports.TenantStores`. Every
operation here checks its arguments and turns the store's refusals (its
`ValueError`s: a bad namespace, an item too large, a bad filter) into
`InvalidArgument` naming the request's field, so a door only translates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from langgraph.store.base import BaseStore, InvalidNamespaceError, Item, SearchItem

from stepstream.server.core.errors import InvalidArgument, NotFound
from stepstream.server.core.jsonio import parse_field
from stepstream.server.core.ports import TenantStores

MAX_PAGE = 1000
DEFAULT_SEARCH_LIMIT = 10
DEFAULT_NAMESPACE_LIMIT = 100
# PutItemRequest.index_fields: this alone means "do not index" (as LangGraph's HTTP API).
NO_INDEX = "$none"


@dataclasses.dataclass(frozen=True)
class PutItem:
    namespace: tuple[str, ...]
    key: str
    value_json: str
    index_fields: tuple[str, ...] = ()
    no_index: bool = False
    # None: the store's default time to live.
    ttl_minutes: float | None = None


@dataclasses.dataclass(frozen=True)
class SearchItems:
    namespace_prefix: tuple[str, ...]
    filter_json: str = ""
    query: str = ""
    limit: int = 0
    offset: int = 0
    refresh_ttl: bool = True


@dataclasses.dataclass(frozen=True)
class ListNamespaces:
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    max_depth: int = 0
    limit: int = 0
    offset: int = 0


def _page(field: str, value: int, default: int) -> int:
    if value < 0 or value > MAX_PAGE:
        raise InvalidArgument(field, f"must be between 1 and {MAX_PAGE} (0 for {default}), got {value}")
    return value or default


def _offset(value: int) -> int:
    if value < 0:
        raise InvalidArgument("offset", f"must be >= 0, got {value}")
    return value


def _refusal(exc: ValueError, namespace_field: str, other_field: str) -> InvalidArgument:
    """The store's ValueError as InvalidArgument naming the field it is about: keys are checked
    before the store is asked, so what it refuses is the namespace or the other field."""
    if isinstance(exc, InvalidNamespaceError):
        return InvalidArgument(namespace_field, str(exc))
    return InvalidArgument(other_field, str(exc))


def _labels(field: str, labels: Sequence[str]) -> tuple[str, ...]:
    if not labels:
        raise InvalidArgument(field, "give at least one label")
    return tuple(labels)


def _key(key: str) -> str:
    if not key:
        raise InvalidArgument("key", "is required")
    if "\x00" in key:
        raise InvalidArgument("key", "cannot contain NUL characters")
    return key


class LongTermStore:
    """The server's store, once the composition root attached it (Core.start)."""

    def __init__(self) -> None:
        self._stores: TenantStores | None = None

    def attach(self, stores: TenantStores | None) -> None:
        self._stores = stores

    def _for(self, owner: str) -> BaseStore:
        if self._stores is None:
            raise NotFound("this server has no long-term store")
        try:
            return self._stores.scoped(owner)
        except ValueError as exc:
            raise InvalidArgument("owner", str(exc)) from None

    def for_run(self, owner: str) -> BaseStore | None:
        """The tenant's view a run's graph reads through runtime.store (None: no store here)."""
        return None if self._stores is None else self._for(owner)

    async def put(self, owner: str, request: PutItem) -> None:
        namespace = _labels("namespace", request.namespace)
        key = _key(request.key)
        value = parse_field("value_json", request.value_json, object_only=True)
        if value is None:
            raise InvalidArgument("value_json", "is required: the item's value as a JSON object")
        ttl = request.ttl_minutes
        if ttl is not None and (not math.isfinite(ttl) or ttl < 0):
            raise InvalidArgument("ttl_minutes", f"must be a positive number of minutes, got {ttl}")
        index: Any = None
        if request.no_index or list(request.index_fields) == [NO_INDEX]:
            index = False
        elif request.index_fields:
            index = list(request.index_fields)
        store = self._for(owner)
        try:
            if ttl:
                await store.aput(namespace, key, value, index=index, ttl=ttl)
            else:
                await store.aput(namespace, key, value, index=index)
        except ValueError as exc:
            raise _refusal(exc, "namespace", "value_json") from None

    async def get(self, owner: str, namespace: Sequence[str], key: str, refresh_ttl: bool = True) -> Item:
        """The item, or NotFound when absent or expired."""
        labels = _labels("namespace", namespace)
        try:
            item = await self._for(owner).aget(labels, _key(key), refresh_ttl=None if refresh_ttl else False)
        except ValueError as exc:
            raise _refusal(exc, "namespace", "namespace") from None
        if item is None:
            raise NotFound(f"no item {key!r} in namespace {list(labels)}")
        return item

    async def delete(self, owner: str, namespace: Sequence[str], key: str) -> None:
        """Deleting an absent item is not an error (LangGraph's stores agree)."""
        labels = _labels("namespace", namespace)
        try:
            await self._for(owner).adelete(labels, _key(key))
        except ValueError as exc:
            raise _refusal(exc, "namespace", "namespace") from None

    async def search(self, owner: str, request: SearchItems) -> list[SearchItem]:
        search_filter = parse_field("filter_json", request.filter_json, object_only=True)
        limit = _page("limit", request.limit, DEFAULT_SEARCH_LIMIT)
        offset = _offset(request.offset)
        try:
            return await self._for(owner).asearch(
                tuple(request.namespace_prefix),
                query=request.query or None,
                filter=search_filter,
                limit=limit,
                offset=offset,
                refresh_ttl=None if request.refresh_ttl else False,
            )
        except ValueError as exc:
            raise _refusal(exc, "namespace_prefix", "filter_json") from None

    async def list_namespaces(self, owner: str, request: ListNamespaces) -> list[tuple[str, ...]]:
        limit = _page("limit", request.limit, DEFAULT_NAMESPACE_LIMIT)
        offset = _offset(request.offset)
        if request.max_depth < 0:
            raise InvalidArgument("max_depth", f"must be >= 0, got {request.max_depth}")
        try:
            return await self._for(owner).alist_namespaces(
                prefix=tuple(request.prefix) or None,
                suffix=tuple(request.suffix) or None,
                max_depth=request.max_depth or None,
                limit=limit,
                offset=offset,
            )
        except ValueError as exc:
            raise _refusal(exc, "prefix", "prefix") from None
