"""The checkpointer's SQL core: statements, serialisation and row decoding, without I/O.

checkpointer.py runs what this module builds (writes through the group-commit
writer, reads on the engine); checkpoint_maintenance.py reuses the decoding.
Everything is SQLAlchemy Core; the only dialect-specific pieces are the
`INSERT ... ON CONFLICT` construct and the optional metadata-filter push-down,
both chosen by dialect name, so SQLite and PostgreSQL share this code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
import sqlalchemy as sa
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy.sql import ColumnElement, Executable, Select

from stepstream.server.storage.batch import Write
from stepstream.server.storage.checkpoint_tables import checkpoint_blobs, checkpoint_writes, checkpoints

# Strings up to this length stay inline in the checkpoint row: a blob row costs
# more than that in keys and index entries, and most such values change rarely.
INLINE_STR_MAX = 128

# Rows per round trip when listing; bounds memory and keeps no read open between pages.
LIST_PAGE = 100

BlobKey = tuple[str, str]  # (channel, version)
Group = tuple[str, str]  # (thread_id, checkpoint_ns)


def is_inline(value: Any) -> bool:
    """Small scalars are cheaper inline in every checkpoint than as a blob row per version."""
    if value is None or isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and len(value) <= INLINE_STR_MAX


def dumps_metadata(metadata: Mapping[str, Any]) -> str:
    return orjson.dumps(metadata, option=orjson.OPT_NON_STR_KEYS).decode()


def loads_metadata(text: str | None) -> CheckpointMetadata:
    return cast(CheckpointMetadata, orjson.loads(text) if text else {})


def _insert_construct(dialect: str) -> Callable[[sa.Table], Any]:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    raise NotImplementedError(f"checkpointer: no INSERT ... ON CONFLICT for dialect {dialect!r}")


def _pk(table: sa.Table) -> list[sa.Column[Any]]:
    return list(table.primary_key.columns)


@dataclass(frozen=True)
class Statements:
    """Statements built once per saver: the group-commit writer batches writes by statement identity."""

    dialect: str
    upsert_checkpoint: Executable
    insert_blob: Executable
    upsert_write: Executable
    insert_write: Executable
    copy_thread: tuple[Executable, ...]

    @classmethod
    def for_dialect(cls, dialect: str) -> Statements:
        insert = _insert_construct(dialect)
        cp = insert(checkpoints)
        upsert_checkpoint = cp.on_conflict_do_update(
            index_elements=_pk(checkpoints),
            set_={
                name: cp.excluded[name]
                for name in ("parent_checkpoint_id", "run_id", "type", "checkpoint", "metadata")
            },
        )
        # A channel version's value never changes, so a repeated blob is simply ignored.
        insert_blob = insert(checkpoint_blobs).on_conflict_do_nothing(index_elements=_pk(checkpoint_blobs))
        # Special channels (WRITES_IDX_MAP) are replaced by a task's latest report;
        # normal writes keep the first copy, as LangGraph's savers do.
        wr = insert(checkpoint_writes)
        upsert_write = wr.on_conflict_do_update(
            index_elements=_pk(checkpoint_writes),
            set_={name: wr.excluded[name] for name in ("task_path", "channel", "type", "blob")},
        )
        insert_write = insert(checkpoint_writes).on_conflict_do_nothing(index_elements=_pk(checkpoint_writes))
        return cls(
            dialect=dialect,
            upsert_checkpoint=upsert_checkpoint,
            insert_blob=insert_blob,
            upsert_write=upsert_write,
            insert_write=insert_write,
            copy_thread=tuple(
                _copy_statement(insert, table) for table in (checkpoints, checkpoint_blobs, checkpoint_writes)
            ),
        )


def _copy_statement(insert: Callable[[sa.Table], Any], table: sa.Table) -> Executable:
    """INSERT INTO t SELECT :dst, ... FROM t WHERE thread_id = :src, skipping rows the target has."""
    names = [c.name for c in table.columns]
    source = sa.select(
        *[sa.bindparam("dst", type_=sa.String).label(n) if n == "thread_id" else table.c[n] for n in names]
    ).where(table.c.thread_id == sa.bindparam("src", type_=sa.String))
    return cast(Executable, insert(table).from_select(names, source).on_conflict_do_nothing())


# --- writes --------------------------------------------------------------------------------------


def checkpoint_rows(
    stmts: Statements,
    serde: SerializerProtocol,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> tuple[list[Write], RunnableConfig]:
    """The writes that store `checkpoint`: one blob per new non-inline channel version, then the row."""
    conf = config["configurable"]
    thread_id = str(conf["thread_id"])
    ns = conf.get("checkpoint_ns", "")
    values = checkpoint["channel_values"]
    inline = {k: v for k, v in values.items() if is_inline(v)}
    writes: list[Write] = []
    for channel, version in new_versions.items():
        if channel in values and channel not in inline:
            type_, blob = serde.dumps_typed(values[channel])
            writes.append(
                (
                    stmts.insert_blob,
                    {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "channel": channel,
                        "version": str(version),
                        "type": type_,
                        "blob": blob,
                    },
                )
            )
    body = {**checkpoint, "channel_values": inline}
    type_, data = serde.dumps_typed(body)
    md = get_serializable_checkpoint_metadata(config, metadata)
    run_id = md.get("run_id")
    writes.append(
        (
            stmts.upsert_checkpoint,
            {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
                "parent_checkpoint_id": conf.get("checkpoint_id"),
                "run_id": None if run_id is None else str(run_id),
                "type": type_,
                "checkpoint": data,
                "metadata": dumps_metadata(md),
            },
        )
    )
    next_config: RunnableConfig = {
        "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}
    }
    return writes, next_config


def task_write_rows(
    stmts: Statements,
    serde: SerializerProtocol,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
) -> list[Write]:
    conf = config["configurable"]
    key = {
        "thread_id": str(conf["thread_id"]),
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": str(conf["checkpoint_id"]),
        "task_id": task_id,
        "task_path": task_path,
    }
    rows: list[Write] = []
    for idx, (channel, value) in enumerate(writes):
        type_, blob = serde.dumps_typed(value)
        special = channel in WRITES_IDX_MAP
        rows.append(
            (
                stmts.upsert_write if special else stmts.insert_write,
                {
                    **key,
                    "idx": WRITES_IDX_MAP.get(channel, idx),
                    "channel": channel,
                    "type": type_,
                    "blob": blob,
                },
            )
        )
    return rows


# --- reads ---------------------------------------------------------------------------------------

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
_WRITE_COLUMNS = ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "idx", "channel")
_WRITES = sa.select(*(_w[n] for n in (*_WRITE_COLUMNS, "type", "blob"))).where(
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
    return sa.select(_b.thread_id, _b.checkpoint_ns, _b.channel, _b.version, _b.type, _b.blob).where(
        *_in_group(_b), sa.or_(*pairs)
    )


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
    for t, ns, cid, task_id, task_path, idx, channel, type_, blob in write_rows:
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
