"""Tables for sessions, runs, run events and assistants (checkpoint tables: checkpoint_tables.py).

Schema changes go through Alembic migrations only (storage/migrations).
No foreign keys: the core deletes dependants explicitly, and the group-commit
writer may order independent inserts freely within one transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("graph_id", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False, server_default="{}"),
    # Seconds since the epoch (UTC): compact, index-friendly and equal on every back end.
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_sessions_owner_created", "owner", "created_at"),
    sa.Index("ix_sessions_updated", "updated_at"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("graph_id", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # The request: input (JSON), command (JSON) and options (JSON).
    sa.Column("input_json", sa.Text, nullable=True),
    sa.Column("command_json", sa.Text, nullable=True),
    sa.Column("options_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    # Outcome.
    sa.Column("values_json", sa.Text, nullable=True),
    sa.Column("interrupts_json", sa.Text, nullable=True),
    sa.Column("error_type", sa.String(256), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    # Execution ownership: the replica that holds the run and until when.
    sa.Column("replica", sa.String(256), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    # A cancel asked of another replica's run: {"reason": ..., "rollback": ...}; its holder acts on it.
    sa.Column("cancel_json", sa.Text, nullable=True),
    # W3C trace context of the run, so whichever replica resumes it continues the trace.
    sa.Column("trace_context", sa.Text, nullable=True),
    # The context nodes read through LangGraph's Runtime (JSON object), and the assistant
    # (with its version) the run was started as.
    sa.Column("context_json", sa.Text, nullable=True),
    sa.Column("assistant_id", sa.String(128), nullable=True),
    sa.Column("assistant_version", sa.Integer, nullable=True),
    sa.Index("ix_runs_session_created", "session_id", "created_at"),
    sa.Index("ix_runs_owner_created", "owner", "created_at"),
    sa.Index("ix_runs_status_created", "status", "created_at"),
    sa.Index("ix_runs_replica", "replica"),
    # The inspector's overview: runs that ended lately, and the latest failures (migration 0007).
    sa.Index("ix_runs_status_ended", "status", "ended_at"),
    # One running run per session, enforced by the database on every back end.
    sa.Index(
        "ux_runs_one_running_per_session",
        "session_id",
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    ),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The event as JSON (see core/events.py); kind is repeated for filtering.
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Index("ix_run_events_session", "session_id"),
)

# Assistants are a tenant's own: the key starts with the owner, so every tenant has its own
# default assistant of each graph (the same id everywhere, derived from the graph's id).
# The row holds the live version's settings, so a search reads one table.
assistants = sa.Table(
    "assistants",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("assistant_id", sa.String(128), primary_key=True),
    sa.Column("graph_id", sa.String(128), nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
    # The live version, and the newest one (an update saves newest + 1).
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(256), nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("config_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("context_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("metadata_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_assistants_owner_created", "owner", "created_at"),
)

# Every version ever saved, unchanged once written.
assistant_versions = sa.Table(
    "assistant_versions",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("assistant_id", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("graph_id", sa.String(128), nullable=False),
    sa.Column("name", sa.String(256), nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("config_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("context_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("metadata_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", sa.Float, nullable=False),
)

# One row per replica, rewritten by it every few seconds (its heartbeat): what the inspector's
# overview shows of replicas, readable by every replica. A row whose heartbeat is old is a
# replica that stopped (or died); rows long silent are removed by the beats of the others.
replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    # Seconds between its beats: "dead" is judged against the replica's own period.
    sa.Column("interval_s", sa.Float, nullable=False),
    sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("running", sa.Integer, nullable=False, server_default="0"),
    sa.Column("leases", sa.Integer, nullable=False, server_default="0"),
    # The graphs it serves (JSON list): the queued runs it could claim are those of these graphs.
    sa.Column("graphs_json", sa.Text, nullable=False, server_default="[]"),
)
