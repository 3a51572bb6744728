"""StoreService: the long-term Store (the items graphs keep through runtime.store), for the
caller's tenant.

    await client.store.put(("memories", "u1"), "pref", {"text": "likes tea"})
    item = await client.store.get(("memories", "u1"), "pref")      # None when absent
    hits = await client.store.search(("memories",), query="drinks", filter={"kind": "pref"})
    await client.store.list_namespaces(prefix=("memories",), max_depth=2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from stepstream.client.errors import NotFoundError
from stepstream.client.jsonio import Json, decode, encode, encode_optional
from stepstream.client.models import timestamp
from stepstream.client.pool import ChannelPool
from stepstream.v1 import store_pb2


@dataclasses.dataclass(frozen=True)
class StoreItem:
    namespace: tuple[str, ...]
    key: str
    value: dict[str, Json]
    created_at: datetime | None
    updated_at: datetime | None
    # Similarity to a search's query; None outside a ranked search.
    score: float | None = None

    @classmethod
    def from_proto(cls, item: store_pb2.StoreItem, ranked: bool = False) -> StoreItem:
        return cls(
            namespace=tuple(item.namespace),
            key=item.key,
            value=decode(item.value_json) or {},
            created_at=timestamp(item.created_at, item.HasField("created_at")),
            updated_at=timestamp(item.updated_at, item.HasField("updated_at")),
            score=item.score if ranked else None,
        )


class Store:
    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool

    async def put(
        self,
        namespace: Sequence[str],
        key: str,
        value: Mapping[str, Json],
        *,
        index: Literal[False] | Sequence[str] | None = None,
        ttl: float | None = None,
    ) -> None:
        """Create or replace an item. index: the fields to embed (None: the store's; False:
        none). ttl: minutes until it expires (None: the store's default)."""
        request = store_pb2.PutItemRequest(
            namespace=list(namespace),
            key=key,
            value_json=encode(dict(value)),
            index_fields=list(index) if index else [],
            no_index=index is False,
            ttl_minutes=ttl or 0.0,
        )
        await self._pool.unary("store", "PutItem", request, idempotent=True)

    async def get(self, namespace: Sequence[str], key: str, *, refresh_ttl: bool = True) -> StoreItem | None:
        """The item, or None when it is absent or expired."""
        request = store_pb2.GetItemRequest(namespace=list(namespace), key=key, no_refresh_ttl=not refresh_ttl)
        try:
            response: store_pb2.GetItemResponse = await self._pool.unary(
                "store", "GetItem", request, idempotent=True
            )
        except NotFoundError:
            return None
        return StoreItem.from_proto(response.item)

    async def delete(self, namespace: Sequence[str], key: str) -> None:
        request = store_pb2.DeleteItemRequest(namespace=list(namespace), key=key)
        await self._pool.unary("store", "DeleteItem", request, idempotent=True)

    async def search(
        self,
        namespace_prefix: Sequence[str] = (),
        *,
        query: str | None = None,
        filter: Mapping[str, Json] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool = True,
    ) -> list[StoreItem]:
        """Items under a namespace prefix matching `filter`, ranked by `query` when the server's
        store has an index."""
        request = store_pb2.SearchItemsRequest(
            namespace_prefix=list(namespace_prefix),
            filter_json=encode_optional(dict(filter) if filter is not None else None),
            query=query or "",
            limit=limit,
            offset=offset,
            no_refresh_ttl=not refresh_ttl,
        )
        response: store_pb2.SearchItemsResponse = await self._pool.unary(
            "store", "SearchItems", request, idempotent=True
        )
        return [StoreItem.from_proto(item, ranked=bool(query)) for item in response.items]

    async def list_namespaces(
        self,
        *,
        prefix: Sequence[str] = (),
        suffix: Sequence[str] = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        """The namespaces holding items, matching prefix/suffix ("*" is any one label)."""
        request = store_pb2.ListNamespacesRequest(
            prefix=list(prefix),
            suffix=list(suffix),
            max_depth=max_depth or 0,
            limit=limit,
            offset=offset,
        )
        response: store_pb2.ListNamespacesResponse = await self._pool.unary(
            "store", "ListNamespaces", request, idempotent=True
        )
        return [tuple(ns.labels) for ns in response.namespaces]
