"""Tables of the LangGraph checkpointer, on the same metadata as sessions and runs.

Layout (after LangGraph's PostgreSQL saver):
- `checkpoints`: one row per checkpoint, holding the checkpoint without its
  channel values (only small scalars stay inline) and the metadata as JSON.
- `checkpoint_blobs`: one row per channel *version*. A checkpoint refers to
  its values through `channel_versions`, so a channel that did not change in a
  superstep costs nothing: storage grows with what changed, not with the state.
- `checkpoint_writes`: pending writes of the tasks of a superstep.

thread_id is the stepstream session id. Deleting a thread or a run uses the
primary keys' thread_id prefix or `ix_checkpoints_run_id`; no foreign keys
(see schema.py).
"""

from __future__ import annotations

import sqlalchemy as sa

from stepstream.server.storage.schema import metadata

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("thread_id", sa.String(128), primary_key=True),
    sa.Column("checkpoint_ns", sa.Text, primary_key=True, server_default=""),
    sa.Column("checkpoint_id", sa.String(64), primary_key=True),
    sa.Column("parent_checkpoint_id", sa.String(64), nullable=True),
    # metadata["run_id"], copied out so delete_for_runs is an indexed delete.
    sa.Column("run_id", sa.Text, nullable=True),
    # Serializer type tag and bytes of the checkpoint minus its blob values.
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("checkpoint", sa.LargeBinary, nullable=False),
    # JSON text, so metadata filters can be pushed into SQL (json_extract / jsonb).
    sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
    sa.Index("ix_checkpoints_run_id", "run_id"),
)

checkpoint_blobs = sa.Table(
    "checkpoint_blobs",
    metadata,
    sa.Column("thread_id", sa.String(128), primary_key=True),
    sa.Column("checkpoint_ns", sa.Text, primary_key=True, server_default=""),
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=True),
)

checkpoint_writes = sa.Table(
    "checkpoint_writes",
    metadata,
    sa.Column("thread_id", sa.String(128), primary_key=True),
    sa.Column("checkpoint_ns", sa.Text, primary_key=True, server_default=""),
    sa.Column("checkpoint_id", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    # WRITES_IDX_MAP gives special channels fixed negative indexes.
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_path", sa.Text, nullable=False, server_default=""),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=True),
)
