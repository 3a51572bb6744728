"""One batch of store operations: checked and prepared before the database is touched, then run
in one transaction.

As in LangGraph's own stores, the reads of a batch (gets, searches, listings)
see the store as it was before the batch, and its puts and deletes apply
after them, the last op on an item winning. Bad input (a namespace, a filter,
a value that is not JSON or too large) fails the whole batch before anything
is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from langgraph.store.base import GetOp, Item, ListNamespacesOp, Op, PutOp, Result, SearchItem, SearchOp
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from stepstream.server.storage.store import embedding, filters, namespaces, sql
from stepstream.server.storage.store.vectors import Embedded, ItemRef, Scope, VectorIndex

# The largest item value accepted, as JSON bytes (a store setting may lower or raise it).
MAX_ITEM_BYTES = 1 << 20


class ItemTooLargeError(ValueError):
    """An item's value is larger than the store accepts."""


@dataclass(frozen=True)
class Settings:
    owner: str
    max_item_bytes: int
    omit_expired: bool


@dataclass
class Plan:
    """A checked batch: its reads by position, and its writes deduplicated per item."""

    ops: list[Op]
    settings: Settings
    puts: dict[tuple[str, str], PutOp] = field(default_factory=dict)
    encoded: dict[tuple[str, str], str] = field(default_factory=dict)
    # Query text -> vector, and per put item its (field, text) pairs then vectors.
    queries: dict[str, Sequence[float]] = field(default_factory=dict)
    to_embed: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    vectors: dict[tuple[str, str], list[Embedded]] = field(default_factory=dict)


def _check_page(what: str, limit: int, offset: int) -> None:
    for name, number in (("limit", limit), ("offset", offset)):
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ValueError(f"{what} {name} must be a non-negative integer, got {number!r}")


def _encode(op: PutOp, max_bytes: int) -> str:
    if not isinstance(op.value, Mapping):
        raise ValueError(f"an item's value is a mapping (JSON object), got {type(op.value).__name__}")
    try:
        data = orjson.dumps(dict(op.value))
    except TypeError as exc:
        raise ValueError(f"item {op.namespace}/{op.key!r}: the value is not JSON ({exc})") from None
    if len(data) > max_bytes:
        raise ItemTooLargeError(
            f"item {op.namespace}/{op.key!r} is {len(data)} bytes as JSON; the store accepts at most "
            f"{max_bytes} bytes per item"
        )
    return data.decode()


def plan(ops: Sequence[Op], settings: Settings, index: embedding.Index | None) -> Plan:
    """Check every op and encode every value; raise ValueError before anything is read or written."""
    batch = Plan(list(ops), settings)
    for op in batch.ops:
        namespaces.validate(op)
        if isinstance(op, SearchOp):
            filters.check(op.filter)
            _check_page("search", op.limit, op.offset)
        elif isinstance(op, ListNamespacesOp):
            _check_page("list_namespaces", op.limit, op.offset)
            if op.max_depth is not None and (not isinstance(op.max_depth, int) or op.max_depth < 1):
                raise ValueError(f"max_depth must be a positive integer, got {op.max_depth!r}")
        elif isinstance(op, PutOp):
            item = (namespaces.to_text(op.namespace), op.key)
            if op.value is not None:
                batch.encoded[item] = _encode(op, settings.max_item_bytes)
                if op.ttl is not None and not (isinstance(op.ttl, int | float) and 0 < op.ttl < math.inf):
                    raise ValueError(f"ttl is a positive number of minutes, got {op.ttl!r}")
            else:
                batch.encoded.pop(item, None)
            batch.puts.pop(item, None)  # the last op on an item wins, in its position
            batch.puts[item] = op
    if index is not None:
        batch.queries = {op.query: () for op in batch.ops if isinstance(op, SearchOp) and op.query}
        for item, op in batch.puts.items():
            texts = embedding.texts_to_embed(index, op)
            if texts:
                batch.to_embed[item] = texts
    return batch


def texts(batch: Plan) -> list[str]:
    return [text for pairs in batch.to_embed.values() for _, text in pairs]


def attach_vectors(batch: Plan, index: embedding.Index, vectors: Sequence[Sequence[float]]) -> None:
    embedding.check_vectors(index, vectors, len(texts(batch)))
    it = iter(vectors)
    owner = batch.settings.owner
    for (ns, key), pairs in batch.to_embed.items():
        batch.vectors[(ns, key)] = [Embedded(owner, ns, key, name, next(it)) for name, _ in pairs]


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _item(row: Row[Any]) -> Item:
    return Item(
        value=orjson.loads(row.value),
        key=row.key,
        namespace=namespaces.from_text(row.namespace),
        created_at=_when(row.created_at),
        updated_at=_when(row.updated_at),
    )


def _found(row: Row[Any], score: float | None = None) -> SearchItem:
    return SearchItem(
        namespaces.from_text(row.namespace),
        row.key,
        orjson.loads(row.value),
        _when(row.created_at),
        _when(row.updated_at),
        score,
    )


class Executor:
    """Runs checked plans, in order, on one connection and in the caller's transaction.

    Several callers' plans share a transaction when they arrive together (store.py): all of
    them were pending at once, so running every read first and then every write, the last
    write to an item winning, is one order in which they could have run one by one.
    """

    def __init__(self, conn: AsyncConnection, vector_index: VectorIndex, now: float, indexed: bool) -> None:
        self.conn = conn
        self.vector_index = vector_index
        self.now = now
        self.indexed = indexed
        self.to_refresh: set[ItemRef] = set()

    def _live_at(self, batch: Plan) -> float | None:
        return self.now if batch.settings.omit_expired else None

    def _seen(self, owner: str, row: Row[Any], refresh: bool) -> None:
        if refresh and row.ttl_minutes is not None:
            self.to_refresh.add((owner, row.namespace, row.key))

    async def run(self, plans: Sequence[Plan]) -> list[list[Result]]:
        results: list[list[Result]] = [[None] * len(batch.ops) for batch in plans]
        # Every get of the group, per tenant and expiry view, in one statement.
        gets: dict[tuple[str, float | None], list[tuple[list[Result], int, GetOp]]] = {}
        for batch, out in zip(plans, results, strict=True):
            view = (batch.settings.owner, self._live_at(batch))
            for i, op in enumerate(batch.ops):
                if isinstance(op, GetOp):
                    gets.setdefault(view, []).append((out, i, op))
                else:
                    out[i] = await self._read(batch, op)
        for (owner, live_at), wanted in gets.items():
            refs = sorted({(namespaces.to_text(op.namespace), op.key) for _, _, op in wanted})
            rows = {(r.namespace, r.key): r for r in await sql.get(self.conn, owner, refs, live_at)}
            for out, i, op in wanted:
                row = rows.get((namespaces.to_text(op.namespace), op.key))
                if row is not None:
                    out[i] = _item(row)
                    self._seen(owner, row, op.refresh_ttl)
        await sql.refresh(self.conn, sorted(self.to_refresh), self.now)
        await self._write(plans)
        return results

    async def _read(self, batch: Plan, op: Op) -> Result:
        if isinstance(op, SearchOp):
            query = batch.queries.get(op.query) if op.query and self.indexed else None
            return await self._search(batch, op, query)
        if isinstance(op, ListNamespacesOp):
            prefix = namespaces.literal_prefix(op.match_conditions or ())
            texts = await sql.namespace_texts(self.conn, batch.settings.owner, prefix, self._live_at(batch))
            return namespaces.listing(texts, op)
        return None  # a put: written after every read

    async def _search(self, batch: Plan, op: SearchOp, query: Sequence[float] | None) -> list[SearchItem]:
        owner, live_at = batch.settings.owner, self._live_at(batch)
        end = op.offset + op.limit
        if query is not None:
            return await self._ranked(batch, op, query)
        if not op.filter:
            rows = await sql.page(self.conn, owner, op.namespace_prefix, live_at, op.limit, op.offset)
        else:
            matched: list[Row[Any]] = []
            # A filter usually passes a fair share of items: twice a page's rows is a first guess.
            async for row in sql.scan(self.conn, owner, op.namespace_prefix, live_at, 2 * end + 8):
                if filters.matches(orjson.loads(row.value), op.filter):
                    matched.append(row)
                    if len(matched) >= end:
                        break
            rows = matched[op.offset : end]
        for row in rows:
            self._seen(owner, row, op.refresh_ttl)
        return [_found(row) for row in rows]

    async def _ranked(self, batch: Plan, op: SearchOp, query: Sequence[float]) -> list[SearchItem]:
        """Items with vectors by similarity (best field), then the matching items without vectors."""
        owner, live_at = batch.settings.owner, self._live_at(batch)
        scope = Scope(owner, op.namespace_prefix, live_at)
        nearest = await self.vector_index.nearest(self.conn, scope, query)
        scores = {(s.namespace, s.key): s.score for s in nearest}
        rows = await sql.items(self.conn, owner, op.namespace_prefix, live_at)
        matched = [r for r in rows if filters.matches(orjson.loads(r.value), op.filter)]
        scored = sorted(
            (r for r in matched if (r.namespace, r.key) in scores),
            key=lambda r: -scores[(r.namespace, r.key)],
        )
        unscored = [r for r in matched if (r.namespace, r.key) not in scores]
        page = (scored + unscored)[op.offset : op.offset + op.limit]
        for row in page:
            self._seen(owner, row, op.refresh_ttl)
        return [_found(r, scores.get((r.namespace, r.key))) for r in page]

    async def _write(self, plans: Sequence[Plan]) -> None:
        last: dict[ItemRef, tuple[Plan, PutOp]] = {}
        for batch in plans:
            for (ns, key), op in batch.puts.items():
                last[(batch.settings.owner, ns, key)] = (batch, op)
        if not last:
            return
        rows: list[dict[str, Any]] = []
        deleted: list[ItemRef] = []
        vectors: list[Embedded] = []
        # A fixed order, so concurrent transactions lock the same items in the same order.
        for item, (batch, op) in sorted(last.items()):
            owner, ns, key = item
            if op.value is None:
                deleted.append(item)
                continue
            ttl = float(op.ttl) if op.ttl is not None else None
            rows.append(
                {
                    "owner": owner,
                    "namespace": ns,
                    "key": key,
                    "value": batch.encoded[(ns, key)],
                    "created_at": self.now,
                    "updated_at": self.now,
                    "ttl_minutes": ttl,
                    "expires_at": self.now + ttl * 60.0 if ttl is not None else None,
                }
            )
            vectors.extend(batch.vectors.get((ns, key), ()))
        await sql.delete(self.conn, deleted)
        await sql.upsert(self.conn, rows)
        # A put replaces the item's vectors (none when it is not indexed); a delete drops them.
        replaced = sorted(last) if self.indexed else deleted
        await self.vector_index.replace(self.conn, replaced, vectors)
