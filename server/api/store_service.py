"""The StoreService servicer: the long-term Store over gRPC, for the caller's tenant.

Translation only: the core (core/longterm.py) checks the arguments and names the
field of a refusal; this maps messages to its requests and items back to messages.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from langgraph.store.base import Item, SearchItem

from stepstream.server.api.convert import timestamp
from stepstream.server.api.servicers import owner_of
from stepstream.server.api.status import replica_trailer, unary
from stepstream.server.core.app import Core
from stepstream.server.core.jsonio import dumps
from stepstream.server.core.longterm import ListNamespaces, PutItem, SearchItems
from stepstream.v1 import store_pb2, store_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def item_pb(item: Item | SearchItem) -> store_pb2.StoreItem:
    score = item.score if isinstance(item, SearchItem) and item.score is not None else 0.0
    return store_pb2.StoreItem(
        namespace=list(item.namespace),
        key=item.key,
        value_json=dumps(item.value),
        created_at=timestamp(item.created_at.timestamp()),
        updated_at=timestamp(item.updated_at.timestamp()),
        score=score,
    )


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, core: Core) -> None:
        self._core = core
        self._items = core.longterm
        self.trailer = replica_trailer(core.settings.replica)

    @unary
    async def PutItem(self, request: store_pb2.PutItemRequest, context: Context) -> Any:
        put = PutItem(
            namespace=tuple(request.namespace),
            key=request.key,
            value_json=request.value_json,
            index_fields=tuple(request.index_fields),
            no_index=request.no_index,
            ttl_minutes=request.ttl_minutes or None,
        )
        await self._items.put(owner_of(self._core, context), put)
        return store_pb2.PutItemResponse()

    @unary
    async def GetItem(self, request: store_pb2.GetItemRequest, context: Context) -> Any:
        item = await self._items.get(
            owner_of(self._core, context),
            request.namespace,
            request.key,
            refresh_ttl=not request.no_refresh_ttl,
        )
        return store_pb2.GetItemResponse(item=item_pb(item))

    @unary
    async def DeleteItem(self, request: store_pb2.DeleteItemRequest, context: Context) -> Any:
        await self._items.delete(owner_of(self._core, context), request.namespace, request.key)
        return store_pb2.DeleteItemResponse()

    @unary
    async def SearchItems(self, request: store_pb2.SearchItemsRequest, context: Context) -> Any:
        search = SearchItems(
            namespace_prefix=tuple(request.namespace_prefix),
            filter_json=request.filter_json,
            query=request.query,
            limit=request.limit,
            offset=request.offset,
            refresh_ttl=not request.no_refresh_ttl,
        )
        items = await self._items.search(owner_of(self._core, context), search)
        return store_pb2.SearchItemsResponse(items=[item_pb(i) for i in items])

    @unary
    async def ListNamespaces(self, request: store_pb2.ListNamespacesRequest, context: Context) -> Any:
        listing = ListNamespaces(
            prefix=tuple(request.prefix),
            suffix=tuple(request.suffix),
            max_depth=request.max_depth,
            limit=request.limit,
            offset=request.offset,
        )
        found = await self._items.list_namespaces(owner_of(self._core, context), listing)
        namespaces = [store_pb2.ListNamespacesResponse.Namespace(labels=list(ns)) for ns in found]
        return store_pb2.ListNamespacesResponse(namespaces=namespaces)
