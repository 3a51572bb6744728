"""Tables for crons, their fire records, webhook deliveries and signing secrets (migration 0006).

On the schema's metadata, so Alembic and the tests see them with the others.
"""

from __future__ import annotations

import sqlalchemy as sa

from stepstream.server.storage.schema import metadata

crons = sa.Table(
    "crons",
    metadata,
    sa.Column("cron_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    # The session every fire runs on; NULL: a new session per fire.
    sa.Column("session_id", sa.String(128), nullable=True),
    # The whole spec (schedule, time zone, graph, input, options, webhook, misfire policy), JSON.
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    # The next due time not yet handled; NULL when paused or past the end. Claimed by moving it.
    sa.Column("next_fire_at", sa.Float, nullable=True),
    sa.Column("anchor_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_crons_next_fire", "next_fire_at"),
    sa.Index("ix_crons_owner_created", "owner", "created_at"),
)

# One row per due time of a cron, whatever became of it: the primary key makes a second
# record of a due time (a doubled fire) impossible on every back end.
cron_fires = sa.Table(
    "cron_fires",
    metadata,
    sa.Column("cron_id", sa.String(64), primary_key=True),
    sa.Column("due_at", sa.Float, primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("session_id", sa.String(128), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    # While pending: the replica starting its run, until when (another takes it over after).
    sa.Column("replica", sa.String(256), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Index("ix_cron_fires_outcome_lease", "outcome", "lease_expires_at"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # The webhook-id header: the same on every attempt.
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    # scheme://host:port, the unit of the concurrency bound.
    sa.Column("destination", sa.String(512), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    # While an attempt is under way: the replica sending it, until when.
    sa.Column("replica", sa.String(256), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_owner_created", "owner", "created_at"),
    sa.Index("ix_webhook_deliveries_run", "run_id"),
)

# Per-tenant signing secrets; the current one has no expiry, rotated-out ones sign until theirs.
webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.Float, primary_key=True),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
)
