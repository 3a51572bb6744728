"""The checkpointer's SQL core, write side: statements and the rows a checkpoint becomes, no I/O.

checkpointer.py hands these rows to the group-commit writer; checkpoint_reads.py
is the read side. Everything is SQLAlchemy Core; the only dialect-specific
pieces are the `INSERT ... ON CONFLICT` construct (here) and the optional
metadata-filter push-down (reads), both chosen by dialect name, so SQLite and
PostgreSQL share this code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy.sql import Executable

from stepstream.server.storage.batch import Write
from stepstream.server.storage.checkpoint_tables import checkpoint_blobs, checkpoint_writes, checkpoints

# Small scalars stay inline in the checkpoint row, as in LangGraph's PostgreSQL saver:
# a blob row costs a statement, a primary-key entry (~100 bytes of keys) and a lookup
# on every read, more than repeating a few bytes per checkpoint. Strings stay inline
# only while short, so a large text channel is still stored once per version.
INLINE_STR_MAX = 128

BlobKey = tuple[str, str]  # (channel, version)
Group = tuple[str, str]  # (thread_id, checkpoint_ns)


def is_inline(value: Any) -> bool:
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
