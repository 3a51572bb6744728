"""The checkpointer's SQL core, read side: queries and decoding of rows into checkpoint tuples.

A checkpoint row holds everything but its blob values; `related_queries`
fetches those (by exact primary key) and the pending writes, and `assemble`
puts the tuples together. No I/O here: checkpointer.py runs the queries.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy.sql import ColumnElement, Executable, Select

from stepstream.server.storage.checkpoint_sql import BlobKey, Group, loads_metadata
from stepstream.server.storage.checkpoint_tables import checkpoint_blobs, checkpoint_writes, checkpoints

# Rows per round trip when listing; bounds memory and keeps no read open between pages.
LIST_PAGE = 100

CHECKPOINT_COLUMNS = (
    checkpoints.c.thread_id,
    checkpoints.c.checkpoint_ns,
    checkpoints.c.checkpoint_id,
    checkpoints.c.parent_checkpoint_id,
    checkpoints.c.type,
    checkpoints.c.checkpoint,
    checkpoints.c.metadata,
)

_POSITION = {c.name: i for i, c in enumerate(CHECKPOINT_COLUMNS)}


@dataclass(frozen=True)
class Search:
    """An `alist` query: SQL predicates, the keyset order, and the filter Python re-checks."""

    where: tuple[ColumnElement[bool], ...]
    order: tuple[sa.Column[Any], ...]
    filter: Mapping[str, Any]

    def page(self, after: Sequence[Any] | None, size: int) -> Select[Any]:
        stmt = sa.select(*CHECKPOINT_COLUMNS).where(*self.where)
        if after is not None:
            stmt = stmt.where(sa.tuple_(*self.order) < sa.tuple_(*after))
        return stmt.order_by(*(c.desc() for c in self.order)).limit(size)

    def key(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """The keyset position of `row`, a row of CHECKPOINT_COLUMNS."""
        return tuple(row[_POSITION[c.name]] for c in self.order)

    def accepts(self, metadata: Mapping[str, Any]) -> bool:
        return all(metadata.get(k) == v for k, v in self.filter.items())


def _in_group(columns: Any) -> tuple[ColumnElement[bool], ...]:
    return (
        columns.thread_id == sa.bindparam("thread_id"),
        columns.checkpoint_ns == sa.bindparam("checkpoint_ns"),
    )


# Built once: statement construction costs more than the query on the hot read path.
_LATEST = (
    sa.select(*CHECKPOINT_COLUMNS)
    .where(*_in_group(checkpoints.c))
    .order_by(checkpoints.c.checkpoint_id.desc())
    .limit(1)
)
_EXACT = sa.select(*CHECKPOINT_COLUMNS).where(
    *_in_group(checkpoints.c), checkpoints.c.checkpoint_id == sa.bindparam("checkpoint_id")
)
_b, _w = checkpoint_blobs.c, checkpoint_writes.c
_WRITES = sa.select(checkpoint_writes).where(
    *_in_group(_w), _w.checkpoint_id.in_(sa.bindparam("ids", expanding=True))
)
BLOBS_PER_QUERY = 64


@functools.cache
def _blobs_statement(count: int) -> Select[Any]:
    """Blobs by exact key, `count` (channel, version) pairs.

    An OR of pairs, unlike a row-value IN list, lets SQLite look each one up in
    the primary key instead of scanning all of the thread's blobs.
    """
    pairs = [
        sa.and_(_b.channel == sa.bindparam(f"c{i}"), _b.version == sa.bindparam(f"v{i}"))
        for i in range(count)
    ]
    return sa.select(checkpoint_blobs).where(*_in_group(_b), sa.or_(*pairs))


Query = tuple[Executable, dict[str, Any]]


def checkpoint_query(config: RunnableConfig) -> Query:
    """The checkpoint `config` names, or the thread's latest in its namespace."""
    conf = config["configurable"]
    params = {"thread_id": str(conf["thread_id"]), "checkpoint_ns": conf.get("checkpoint_ns", "")}
    if checkpoint_id := get_checkpoint_id(config):
        return _EXACT, {**params, "checkpoint_id": checkpoint_id}
    return _LATEST, params


def related_queries(loaded: Iterable[Loaded]) -> tuple[list[Query], list[Query]]:
    """The blob and pending-write queries for `loaded`: one of each per (thread, namespace)."""
    keys: dict[Group, set[BlobKey]] = {}
    ids: dict[Group, list[str]] = {}
    for item in loaded:
        keys.setdefault(item.group, set()).update(item.blob_keys())
        ids.setdefault(item.group, []).append(item.checkpoint_id)
    blobs: list[Query] = []
    for (t, ns), wanted in keys.items():
        ordered = sorted(wanted)
        for start in range(0, len(ordered), BLOBS_PER_QUERY):
            part = ordered[start : start + BLOBS_PER_QUERY]
            params = {"thread_id": t, "checkpoint_ns": ns}
            for i, (channel, version) in enumerate(part):
                params[f"c{i}"], params[f"v{i}"] = channel, version
            blobs.append((_blobs_statement(len(part)), params))
    writes: list[Query] = [
        (_WRITES, {"thread_id": t, "checkpoint_ns": ns, "ids": cids}) for (t, ns), cids in ids.items()
    ]
    return blobs, writes


def search(
    dialect: str,
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,
    before: RunnableConfig | None,
) -> Search:
    t = checkpoints.c
    where: list[ColumnElement[bool]] = []
    # Order by checkpoint id, then by whichever key columns the query leaves open (ties across threads).
    order: list[sa.Column[Any]] = [t.checkpoint_id]
    if config is not None:
        conf = config["configurable"]
        where.append(t.thread_id == str(conf["thread_id"]))
        if (ns := conf.get("checkpoint_ns")) is not None:
            where.append(t.checkpoint_ns == ns)
        else:
            order.append(t.checkpoint_ns)
        if checkpoint_id := get_checkpoint_id(config):
            where.append(t.checkpoint_id == checkpoint_id)
    else:
        order += [t.checkpoint_ns, t.thread_id]
    if before is not None and (before_id := get_checkpoint_id(before)):
        where.append(t.checkpoint_id < before_id)
    filter = dict(filter or {})
    where += _pushed_filter(dialect, filter)
    return Search(tuple(where), tuple(order), filter)


def _pushed_filter(dialect: str, filter: Mapping[str, Any]) -> list[ColumnElement[bool]]:
    """SQL for the filter entries the database can test exactly; Python re-checks all of them."""
    scalars = {
        k: v for k, v in filter.items() if isinstance(v, str | int | float) and not isinstance(v, bool)
    }
    if not scalars:
        return []
    column = checkpoints.c.metadata
    if dialect == "sqlite":
        return [
            sa.func.json_extract(column, sa.literal('$."' + k + '"')) == v
            for k, v in scalars.items()
            if '"' not in k and "\\" not in k
        ]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return [sa.cast(column, JSONB).contains(scalars)]
    return []


@dataclass
class Loaded:
    """A checkpoint row, decoded except for its blob values."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: dict[str, Any]
    metadata: CheckpointMetadata

    @property
    def group(self) -> Group:
        return (self.thread_id, self.checkpoint_ns)

    def blob_keys(self) -> set[BlobKey]:
        inline = self.checkpoint["channel_values"]
        return {(ch, str(v)) for ch, v in self.checkpoint["channel_versions"].items() if ch not in inline}


def load_row(serde: SerializerProtocol, row: Sequence[Any]) -> Loaded:
    thread_id, ns, checkpoint_id, parent_id, type_, data, metadata = row
    return Loaded(
        thread_id,
        ns,
        checkpoint_id,
        parent_id,
        serde.loads_typed((type_, data)),
        loads_metadata(metadata),
    )


def assemble(
    serde: SerializerProtocol,
    loaded: Sequence[Loaded],
    blob_rows: Iterable[Sequence[Any]],
    write_rows: Iterable[Sequence[Any]],
) -> list[CheckpointTuple]:
    """Checkpoint tuples from decoded rows plus the blob and write rows they need."""
    blobs: dict[tuple[str, str, str, str], tuple[str, bytes]] = {
        (t, ns, ch, ver): (type_, blob) for t, ns, ch, ver, type_, blob in blob_rows
    }
    writes: dict[tuple[str, str, str], list[tuple[tuple[str, str, int], str, str, str, bytes]]] = {}
    for t, ns, cid, task_id, idx, task_path, channel, type_, blob in write_rows:
        writes.setdefault((t, ns, cid), []).append(
            (writes_sort_key(task_path, task_id, idx), task_id, channel, type_, blob)
        )
    out: list[CheckpointTuple] = []
    for item in loaded:
        values = dict(item.checkpoint["channel_values"])
        for ch, version in item.checkpoint["channel_versions"].items():
            found = blobs.get((item.thread_id, item.checkpoint_ns, ch, str(version)))
            # Decoded per checkpoint, never shared: callers may mutate what they get.
            if found is not None and found[0] != "empty":
                values[ch] = serde.loads_typed(found)
        pending: list[PendingWrite] = [
            (task_id, channel, serde.loads_typed((type_, blob)))
            for _, task_id, channel, type_, blob in sorted(
                writes.get((item.thread_id, item.checkpoint_ns, item.checkpoint_id), [])
            )
        ]
        base = {"thread_id": item.thread_id, "checkpoint_ns": item.checkpoint_ns}
        out.append(
            CheckpointTuple(
                config={"configurable": {**base, "checkpoint_id": item.checkpoint_id}},
                checkpoint=cast(Checkpoint, {**item.checkpoint, "channel_values": values}),
                metadata=item.metadata,
                parent_config=(
                    {"configurable": {**base, "checkpoint_id": item.parent_checkpoint_id}}
                    if item.parent_checkpoint_id
                    else None
                ),
                pending_writes=pending,
            )
        )
    return out
