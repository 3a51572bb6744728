"""Deleting, copying and pruning checkpoints, and collecting blobs nothing refers to any more.

These run in their own short transactions, not through the group-commit
writer: their effect depends on statement order (batch.py's contract).
Threads are handled in chunks so a long history never holds SQLite's single
write lock for long.

Pruning is meant for threads no run is writing to (stepstream runs one run
per session at a time, and its retention task skips running sessions). Even
so, blobs are listed *before* the checkpoints that refer to them: a
checkpoint and its new blobs commit together, so a blob seen in the first
read has its checkpoint in the second one, and is never mistaken for garbage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepstream.server.storage.checkpoint_sql import BlobKey, Group, Statements, loads_metadata
from stepstream.server.storage.checkpoint_tables import checkpoint_blobs, checkpoint_writes, checkpoints

THREADS_PER_PASS = 200
ROWS_PER_STATEMENT = 500  # keeps IN lists far below every back end's bound-parameter limit

T = TypeVar("T")
Victim = tuple[str, str, str]  # (thread_id, checkpoint_ns, checkpoint_id)

_cp, _blob, _wr = checkpoints.c, checkpoint_blobs.c, checkpoint_writes.c
_DELETE_CHECKPOINT = checkpoints.delete().where(
    _cp.thread_id == sa.bindparam("t"),
    _cp.checkpoint_ns == sa.bindparam("ns"),
    _cp.checkpoint_id == sa.bindparam("cid"),
)
_DELETE_WRITES = checkpoint_writes.delete().where(
    _wr.thread_id == sa.bindparam("t"),
    _wr.checkpoint_ns == sa.bindparam("ns"),
    _wr.checkpoint_id == sa.bindparam("cid"),
)
_DELETE_BLOB = checkpoint_blobs.delete().where(
    _blob.thread_id == sa.bindparam("t"),
    _blob.checkpoint_ns == sa.bindparam("ns"),
    _blob.channel == sa.bindparam("ch"),
    _blob.version == sa.bindparam("ver"),
)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in_groups(columns: Any, groups: Iterable[Group]) -> sa.ColumnElement[bool]:
    return sa.or_(*(sa.and_(columns.thread_id == t, columns.checkpoint_ns == ns) for t, ns in groups))


async def delete_threads(engine: AsyncEngine, thread_ids: Sequence[str]) -> None:
    for chunk in _chunks(list(dict.fromkeys(thread_ids)), ROWS_PER_STATEMENT):
        async with engine.begin() as conn:
            for table in (checkpoints, checkpoint_blobs, checkpoint_writes):
                await conn.execute(table.delete().where(table.c.thread_id.in_(chunk)))


async def copy_thread(engine: AsyncEngine, stmts: Statements, source: str, target: str) -> None:
    """Copy every checkpoint, blob and write in one transaction (history included, for DeltaChannel)."""
    async with engine.begin() as conn:
        for stmt in stmts.copy_thread:
            await conn.execute(stmt, {"src": source, "dst": target})


async def delete_for_runs(engine: AsyncEngine, serde: SerializerProtocol, run_ids: Sequence[str]) -> None:
    victims: list[Victim] = []
    for chunk in _chunks(list(run_ids), ROWS_PER_STATEMENT):
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(_cp.thread_id, _cp.checkpoint_ns, _cp.checkpoint_id).where(_cp.run_id.in_(chunk))
            )
            victims += [(t, ns, cid) for t, ns, cid in rows]
    await _delete_checkpoints(engine, victims)
    await collect_garbage(engine, serde, {(t, ns) for t, ns, _ in victims})


async def prune(engine: AsyncEngine, serde: SerializerProtocol, thread_ids: Sequence[str], keep: int) -> None:
    """Keep the newest `keep` checkpoints of each (thread, namespace), and what they still need."""
    if keep < 1:
        raise ValueError("keep must be at least 1; use delete_threads to drop whole threads")
    for chunk in _chunks(list(dict.fromkeys(thread_ids)), THREADS_PER_PASS):
        await _prune_chunk(engine, serde, chunk, keep)


async def prune_all(engine: AsyncEngine, serde: SerializerProtocol, keep: int) -> None:
    """`prune` over every thread holding more than `keep` checkpoints in some namespace."""
    after: str | None = None
    while True:
        stmt = (
            sa.select(_cp.thread_id)
            .group_by(_cp.thread_id, _cp.checkpoint_ns)
            .having(sa.func.count() > keep)
            .order_by(_cp.thread_id)
            .limit(THREADS_PER_PASS)
        )
        if after is not None:
            stmt = stmt.where(_cp.thread_id > after)
        async with engine.connect() as conn:
            chunk = list(dict.fromkeys((await conn.execute(stmt)).scalars()))
        if not chunk:
            return
        await prune(engine, serde, chunk, keep)
        after = chunk[-1]


async def _prune_chunk(
    engine: AsyncEngine, serde: SerializerProtocol, thread_ids: Sequence[str], keep: int
) -> None:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(_cp.thread_id, _cp.checkpoint_ns, _cp.checkpoint_id, _cp.metadata)
                .where(_cp.thread_id.in_(thread_ids))
                .order_by(_cp.thread_id, _cp.checkpoint_ns, _cp.checkpoint_id.desc())
            )
        ).all()
        by_group: dict[Group, list[Sequence[Any]]] = {}
        for row in rows:
            by_group.setdefault((row[0], row[1]), []).append(row)
        victims: list[Victim] = []
        for group, items in by_group.items():
            if len(items) <= keep:
                continue
            kept = items[:keep]
            delta = {cid: _delta_channels(metadata) for _, _, cid, metadata in kept}
            needed = await _delta_ancestors(conn, serde, group, delta) if any(delta.values()) else set()
            victims += [(*group, row[2]) for row in items[keep:] if row[2] not in needed]
    await _delete_checkpoints(engine, victims)
    await collect_garbage(engine, serde, {(t, ns) for t, ns, _ in victims})


def _delta_channels(metadata: str | None) -> set[str]:
    """DeltaChannels whose value at this checkpoint is rebuilt from ancestors' writes."""
    counters = loads_metadata(metadata).get("counters_since_delta_snapshot") or {}
    return set(counters)


async def _delta_ancestors(
    conn: AsyncConnection, serde: SerializerProtocol, group: Group, delta: dict[str, set[str]]
) -> set[str]:
    """Ancestors to keep so each kept checkpoint's DeltaChannels still reach a stored value.

    A DeltaChannel stores a snapshot only now and then; in between, its value is
    the nearest ancestor's stored value plus the writes since (see
    BaseCheckpointSaver.prune). Walk each parent chain until every such channel
    has a value, keeping the checkpoints (and so their writes) on the way.
    """
    t, ns = group
    blob_keys: set[BlobKey] = {
        (ch, ver)
        for ch, ver in await conn.execute(
            sa.select(_blob.channel, _blob.version).where(_blob.thread_id == t, _blob.checkpoint_ns == ns)
        )
    }
    chain: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for cid, parent, type_, data in await conn.execute(
        sa.select(_cp.checkpoint_id, _cp.parent_checkpoint_id, _cp.type, _cp.checkpoint).where(
            _cp.thread_id == t, _cp.checkpoint_ns == ns
        )
    ):
        chain[cid] = (parent, serde.loads_typed((type_, data)))

    def has_value(body: dict[str, Any], channel: str) -> bool:
        if channel in body["channel_values"]:
            return True
        version = body["channel_versions"].get(channel)
        return version is not None and (channel, str(version)) in blob_keys

    needed: set[str] = set()
    for cid, channels in delta.items():
        missing = set(channels)
        current = chain[cid][0] if cid in chain else None
        while missing and current is not None and current in chain:
            needed.add(current)
            parent, body = chain[current]
            missing = {ch for ch in missing if not has_value(body, ch)}
            current = parent
    return needed


async def _delete_checkpoints(engine: AsyncEngine, victims: Sequence[Victim]) -> None:
    for chunk in _chunks(victims, ROWS_PER_STATEMENT):
        params = [{"t": t, "ns": ns, "cid": cid} for t, ns, cid in chunk]
        async with engine.begin() as conn:
            await conn.execute(_DELETE_WRITES, params)
            await conn.execute(_DELETE_CHECKPOINT, params)


async def collect_garbage(engine: AsyncEngine, serde: SerializerProtocol, groups: Iterable[Group]) -> None:
    """Delete the blobs of `groups` that no remaining checkpoint refers to."""
    for chunk in _chunks(sorted(groups), THREADS_PER_PASS):
        async with engine.connect() as conn:
            # Blobs first, then checkpoints: see the module docstring.
            blobs = (
                await conn.execute(
                    sa.select(_blob.thread_id, _blob.checkpoint_ns, _blob.channel, _blob.version).where(
                        _in_groups(_blob, chunk)
                    )
                )
            ).all()
            if not blobs:
                continue
            referenced: set[tuple[str, str, str, str]] = set()
            for t, ns, type_, data in await conn.execute(
                sa.select(_cp.thread_id, _cp.checkpoint_ns, _cp.type, _cp.checkpoint).where(
                    _in_groups(_cp, chunk)
                )
            ):
                body = serde.loads_typed((type_, data))
                referenced.update((t, ns, ch, str(v)) for ch, v in body["channel_versions"].items())
        garbage = [
            {"t": t, "ns": ns, "ch": ch, "ver": ver}
            for t, ns, ch, ver in blobs
            if (t, ns, ch, ver) not in referenced
        ]
        for part in _chunks(garbage, ROWS_PER_STATEMENT):
            async with engine.begin() as conn:
                await conn.execute(_DELETE_BLOB, part)
