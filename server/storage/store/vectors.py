"""The vector index seam, and its exact-scan implementation on both databases.

`VectorIndex` is what the store needs of an index: replace an item's vectors
in the batch's transaction, drop those of expired items, and rank the items
of a namespace prefix by cosine similarity to a query. `ExactScanIndex` keeps
float32 vectors in `store_vectors` and scores every vector in scope in
Python: exact, and fast enough for the thousands of memories a tenant keeps.
An approximate index (pgvector's HNSW, not installable here) can plug in
behind the same Protocol later.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stepstream.server.storage.store import namespaces
from stepstream.server.storage.store.tables import store_items, store_vectors

try:  # numpy scores a whole scan in one product; pure Python gives the same scores, slower.
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with the dev tools
    np = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Embedded:
    """One indexed text of an item, embedded."""

    owner: str
    namespace: str  # text form (namespaces.to_text)
    key: str
    field: str
    vector: Sequence[float]


# (owner, namespace text, key): one item of one tenant.
ItemRef = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Scope:
    """Which items a ranking covers: one tenant's, under a namespace prefix."""

    owner: str
    prefix: tuple[str, ...]
    # Leave out items whose expiry is at or before this moment (None: keep expired, unswept ones).
    live_at: float | None = None


@dataclass(frozen=True, slots=True)
class Scored:
    namespace: str
    key: str
    score: float


class VectorIndex(Protocol):
    async def replace(
        self, conn: AsyncConnection, items: Sequence[ItemRef], rows: Sequence[Embedded]
    ) -> None:
        """Drop every vector of `items`, then store `rows`."""
        ...

    async def drop_expired(self, conn: AsyncConnection, now: float) -> None:
        """Drop the vectors of items that expired before `now` (called before those items go)."""
        ...

    async def nearest(self, conn: AsyncConnection, scope: Scope, query: Sequence[float]) -> list[Scored]:
        """Items in scope that have vectors, best first, each scored by its most similar vector."""
        ...


def pack(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack(blob: bytes) -> tuple[float, ...]:
    return struct.unpack(f"<{len(blob) // 4}f", blob)


def _in_scope(table: sa.Table, scope: Scope) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [table.c.owner == scope.owner]
    bounds = namespaces.prefix_bounds(scope.prefix)
    if bounds is not None:
        exact, low, high = bounds
        ns = table.c.namespace
        where.append(sa.or_(ns == exact, sa.and_(ns >= low, ns < high)))
    return where


def _same_item(a: sa.Table, b: sa.Table) -> sa.ColumnElement[bool]:
    return sa.and_(a.c.owner == b.c.owner, a.c.namespace == b.c.namespace, a.c.key == b.c.key)


def cosine_scores(query: Sequence[float], blobs: Sequence[bytes]) -> list[float]:
    """Cosine similarity of `query` with each packed vector; 0 for a zero vector."""
    if not blobs:
        return []
    if np is not None and sys.byteorder == "little":
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float64)
        q = np.asarray(query, dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(q))
        dots = matrix @ q
        safe = np.where(norms == 0, 1.0, norms)
        return [float(s) for s in np.where(norms == 0, 0.0, dots / safe)]
    q_norm = math.sqrt(sum(x * x for x in query))
    scores = []
    for blob in blobs:
        v = unpack(blob)
        norm = math.sqrt(sum(x * x for x in v)) * q_norm
        scores.append(sum(a * b for a, b in zip(v, query, strict=True)) / norm if norm else 0.0)
    return scores


class ExactScanIndex:
    """Every vector in scope is read and scored: exact on SQLite and PostgreSQL alike."""

    async def replace(
        self, conn: AsyncConnection, items: Sequence[ItemRef], rows: Sequence[Embedded]
    ) -> None:
        v = store_vectors.c
        if items:
            await conn.execute(
                sa.delete(store_vectors).where(
                    v.owner == sa.bindparam("o"),
                    v.namespace == sa.bindparam("ns"),
                    v.key == sa.bindparam("k"),
                ),
                [{"o": owner, "ns": ns, "k": key} for owner, ns, key in items],
            )
        if rows:
            await conn.execute(
                sa.insert(store_vectors),
                [
                    {
                        "owner": r.owner,
                        "namespace": r.namespace,
                        "key": r.key,
                        "field": r.field,
                        "embedding": pack(r.vector),
                    }
                    for r in rows
                ],
            )

    async def drop_expired(self, conn: AsyncConnection, now: float) -> None:
        i = store_items.c
        expired = sa.exists().where(_same_item(store_items, store_vectors), i.expires_at < now)
        await conn.execute(sa.delete(store_vectors).where(expired))

    async def nearest(self, conn: AsyncConnection, scope: Scope, query: Sequence[float]) -> list[Scored]:
        v = store_vectors.c
        stmt = sa.select(v.namespace, v.key, v.embedding).where(*_in_scope(store_vectors, scope))
        if scope.live_at is not None:
            i = store_items.c
            expired = sa.exists().where(_same_item(store_items, store_vectors), i.expires_at <= scope.live_at)
            stmt = stmt.where(~expired)
        rows = (await conn.execute(stmt)).all()
        best: dict[tuple[str, str], float] = {}
        for row, score in zip(rows, cosine_scores(query, [r.embedding for r in rows]), strict=True):
            item = (row.namespace, row.key)
            if score > best.get(item, -math.inf):
                best[item] = score
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        return [Scored(ns, key, score) for (ns, key), score in ranked]
