"""Every statement on `store_items` (the vectors' are in vectors.py).

Times are passed in, never taken from the database clock: the store's clock
decides what has expired, the same on SQLite and PostgreSQL (and in tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from stepstream.server.storage.store import namespaces
from stepstream.server.storage.store.tables import store_items
from stepstream.server.storage.store.vectors import ItemRef

_i = store_items.c
ITEM_COLUMNS = (_i.namespace, _i.key, _i.value, _i.created_at, _i.updated_at, _i.ttl_minutes)
# Rows a filtered scan reads at most at a time (it starts with what a page needs, then doubles).
SCAN_CHUNK = 1024


def _upsert(dialect: str) -> sa.Executable:
    insert = postgresql.insert(store_items) if dialect == "postgresql" else sqlite.insert(store_items)
    # An overwrite keeps the item's created_at.
    return insert.on_conflict_do_update(
        index_elements=[_i.owner, _i.namespace, _i.key],
        set_={
            "value": insert.excluded.value,
            "updated_at": insert.excluded.updated_at,
            "ttl_minutes": insert.excluded.ttl_minutes,
            "expires_at": insert.excluded.expires_at,
        },
    )


_UPSERTS = {name: _upsert(name) for name in ("postgresql", "sqlite")}

_DELETE = sa.delete(store_items).where(
    _i.owner == sa.bindparam("o"), _i.namespace == sa.bindparam("ns"), _i.key == sa.bindparam("k")
)

# Reading an item with a TTL starts its time to live again.
_REFRESH = (
    sa.update(store_items)
    .where(
        _i.owner == sa.bindparam("o"),
        _i.namespace == sa.bindparam("ns"),
        _i.key == sa.bindparam("k"),
        _i.ttl_minutes.is_not(None),
    )
    .values(expires_at=sa.bindparam("now") + _i.ttl_minutes * 60.0)
)


def _live(live_at: float | None) -> list[sa.ColumnElement[bool]]:
    if live_at is None:
        return []
    return [sa.or_(_i.expires_at.is_(None), _i.expires_at > live_at)]


def _under(owner: str, prefix: Sequence[str]) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [_i.owner == owner]
    bounds = namespaces.prefix_bounds(prefix)
    if bounds is not None:
        exact, low, high = bounds
        where.append(sa.or_(_i.namespace == exact, sa.and_(_i.namespace >= low, _i.namespace < high)))
    return where


async def upsert(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or overwrite items: rows of every store_items column."""
    if rows:
        await conn.execute(_UPSERTS[conn.dialect.name], list(rows))


async def delete(conn: AsyncConnection, items: Iterable[ItemRef]) -> None:
    params = [{"o": owner, "ns": ns, "k": key} for owner, ns, key in items]
    if params:
        await conn.execute(_DELETE, params)


async def refresh(conn: AsyncConnection, items: Iterable[ItemRef], now: float) -> None:
    params = [{"o": owner, "ns": ns, "k": key, "now": now} for owner, ns, key in items]
    if params:
        await conn.execute(_REFRESH, params)


async def get(
    conn: AsyncConnection, owner: str, items: Sequence[tuple[str, str]], live_at: float | None
) -> list[Row[Any]]:
    """The items of `owner` among (namespace text, key) pairs: one statement for many gets."""
    stmt: sa.Select[Any] = sa.select(*ITEM_COLUMNS).where(
        _i.owner == owner, sa.tuple_(_i.namespace, _i.key).in_(items), *_live(live_at)
    )
    return list((await conn.execute(stmt)).all())


def _search(owner: str, prefix: Sequence[str], live_at: float | None) -> sa.Select[Any]:
    # Most recently updated first (as LangGraph's PostgreSQL store); ties in a stable order for paging.
    return (
        sa.select(*ITEM_COLUMNS)
        .where(*_under(owner, prefix), *_live(live_at))
        .order_by(_i.updated_at.desc(), _i.namespace, _i.key)
    )


async def page(
    conn: AsyncConnection, owner: str, prefix: Sequence[str], live_at: float | None, limit: int, offset: int
) -> list[Row[Any]]:
    stmt = _search(owner, prefix, live_at).limit(limit).offset(offset)
    return list((await conn.execute(stmt)).all())


async def scan(
    conn: AsyncConnection, owner: str, prefix: Sequence[str], live_at: float | None, first: int
) -> AsyncIterator[Row[Any]]:
    """Every item under the prefix, in search order, read a chunk at a time while the caller
    wants more: `first` rows, then twice as many each time (up to SCAN_CHUNK)."""
    stmt = _search(owner, prefix, live_at)
    offset, chunk = 0, max(1, min(first, SCAN_CHUNK))
    while True:
        rows = (await conn.execute(stmt.limit(chunk).offset(offset))).all()
        for row in rows:
            yield row
        if len(rows) < chunk:
            return
        offset += chunk
        chunk = min(chunk * 2, SCAN_CHUNK)


async def items(
    conn: AsyncConnection, owner: str, prefix: Sequence[str], live_at: float | None
) -> list[Row[Any]]:
    return list((await conn.execute(_search(owner, prefix, live_at))).all())


async def namespace_texts(
    conn: AsyncConnection, owner: str, prefix: Sequence[str], live_at: float | None
) -> list[str]:
    """The distinct namespaces holding items under `prefix` (matching and paging are the caller's)."""
    stmt = sa.select(_i.namespace).where(*_under(owner, prefix), *_live(live_at)).distinct()
    return list((await conn.execute(stmt)).scalars())


async def sweep(conn: AsyncConnection, now: float) -> int:
    """Delete every tenant's items that expired before `now`; how many went."""
    result = await conn.execute(sa.delete(store_items).where(_i.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
