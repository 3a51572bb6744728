"""One flat settings object for `stepstream serve`, with each default beside its field.

Every field is also a flag of `serve` and a STEPSTREAM_* environment variable
(cli/settings.py); the docstring under a field is its help and its line in
docs/configuration.md.
"""

from __future__ import annotations

import enum
import os
import socket
from typing import Annotated, Literal

from pydantic import Field

from stepstream.cli.settings import Flag, Settings


def default_replica_name() -> str:
    """<host>-<pid>"""
    return f"{socket.gethostname()}-{os.getpid()}"


# Connection age of `serve --workers` when none is given (max_connection_age_seconds).
WORKER_CONNECTION_AGE_SECONDS = 60.0


# Settings each process must have its own of: the processes `up` and `serve --workers` start
# are given theirs, and do not inherit the parent's STEPSTREAM_REPLICA or STEPSTREAM_PORT.
PER_PROCESS = ("replica", "port")


class Durability(enum.StrEnum):
    """When a run's next superstep starts (ServerSettings.durability)."""

    SYNC = "sync"
    ASYNC = "async"


class ServerSettings(Settings):
    # Where the service listens.
    host: str = "127.0.0.1"
    """Address to listen on (a non-loopback one needs authentication or --allow-unauthenticated)."""
    port: Annotated[int, Field(ge=0, le=65535)] = 50051
    """Port to listen on; 0 picks a free port (printed at start)."""
    # One process uses one core; each worker is a replica of its own on the same database
    # (server/workers.py).
    workers: Annotated[int, Field(ge=1)] = 1
    """Server processes sharing the port (one core each)."""
    # Set for the workers only, so a second server started by mistake on a taken port fails
    # instead of sharing it.
    reuse_port: bool = False
    """Let other processes listen on the same port (SO_REUSEPORT), as --workers' processes do."""
    # Calls in flight, long session streams included, finish on the old connection. The kernel
    # hands each new connection to a worker at random, so reconnecting evens out workers that
    # drew many.
    max_connection_age_seconds: Annotated[float | None, Field(ge=0), Flag("--max-connection-age")] = None
    """Seconds before a client connection is asked to reconnect (HTTP/2 GOAWAY); none: 60 with
    --workers, else never; 0: never."""
    db_url: Annotated[str, Flag("--db")] = "sqlite+aiosqlite:///stepstream.db"
    """SQLAlchemy URL (a SQLite file in the working folder by default)."""
    config_path: Annotated[str | None, Flag("--config")] = None
    """stepstream.json or langgraph.json naming the graphs ("graphs": {id: "path:attr"})."""
    # The embedded default migrates; a cluster runs `stepstream db upgrade` once instead.
    migrate_on_start: Annotated[bool, Flag("--no-migrate", invert=True)] = True
    """Whether to apply the Alembic migrations at start; --no-migrate (STEPSTREAM_NO_MIGRATE=true)
    turns it off."""
    replica: str = Field(default_factory=default_replica_name)
    """Name of this replica, recorded on the runs it executes; keep it across restarts."""
    default_owner: str = "local"
    """Owner (tenant) of everything when authentication is off."""
    # Per-replica admission.
    max_active_runs: int = 10_000
    """Runs executing at once."""
    max_queued_runs: int = 10_000
    """Runs waiting beyond that."""
    queue_full_retry_after: float = 1.0
    """Seconds a client is told to wait when the queue is full (RetryInfo)."""
    # They must never block the event loop.
    sync_node_threads: int = 32
    """Threads for sync (def) graph nodes."""
    default_recursion_limit: int = 25
    """LangGraph's recursion_limit when a run does not set one."""
    # "sync": once the last one's checkpoint has committed, so a replica that dies mid-run runs
    # again at most the superstep it was in. "async" (LangGraph's own default): while it
    # commits, so a run's supersteps share commits (more runs/s); a replica that dies may then
    # run again the superstep before too. Either way a superstep is reported finished only once
    # its checkpoint has committed.
    durability: Durability = Durability.SYNC
    """'sync': a superstep starts once the one before is durable; 'async': while it commits
    (LangGraph's default, more runs/s; a replica that dies may run one more superstep again)."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest gRPC message accepted or sent, in bytes."""
    # Retention, enforced in the background.
    session_ttl_seconds: Annotated[float, Flag("--session-ttl")] = 0.0
    """Delete sessions idle this many seconds, with their runs, events and checkpoints (0: never)."""
    keep_checkpoints: int = 0
    """Checkpoints kept per session (0: all)."""
    retention_interval_seconds: float = 60.0
    """Seconds between two retention passes."""
    # Runs that do not reach a boundary in time are cancelled; their last checkpoint stays, so
    # they can be continued.
    shutdown_grace_seconds: Annotated[float, Flag("--grace")] = 10.0
    """Seconds runs get to reach a superstep boundary on SIGTERM."""
    # Rate limits for external APIs, reached by graph nodes through the run's context: the
    # sidecar (one budget for every replica), or else an in-process limiter over a limits file
    # (the single-machine default); neither: no limiter.
    ratelimiter_address: Annotated[str | None, Flag("--ratelimiter")] = None
    """Address of the rate-limiter sidecar."""
    limits_path: Annotated[str | None, Flag("--limits")] = None
    """Limits file for the in-process limiter (no sidecar)."""
    # A run whose lease lapsed (its replica died) is taken over by another replica.
    lease_seconds: float = 3.0
    """Seconds a replica holds each run it executes (its lease)."""
    lease_renew_seconds: float = 1.0
    """Seconds between renewals of each lease."""
    # PostgreSQL tells replicas at once through notifications; this is the backstop.
    queue_poll_seconds: float = 0.5
    """How often a replica looks for queued runs and lapsed leases without being told."""
    # "local" divides each limit by ratelimiter_expected_replicas until the sidecar answers.
    ratelimiter_on_unavailable: Literal["closed", "local"] = "closed"
    """Sidecar unreachable: 'closed' (acquires fail, the run fails cleanly) or 'local' (a
    conservative local budget)."""
    ratelimiter_expected_replicas: int = 1
    """Replicas sharing the budget (sizes the local one)."""
    max_writes_per_commit: int = 5_000
    """Group commit: most writes committed in one transaction."""
    # Restart, failover: group commits and reads are retried before the calls waiting fail.
    db_retry_seconds: float = 30.0
    """Seconds to keep retrying while the database cannot be reached."""
    log_level: str = "WARNING"
    """Python logging level."""

    # -- who may call (SECURITY.md) ----------------------------------------------------------
    # Authentication is on when a principals file or a JWT key set is given; with neither it is
    # off, which is allowed only on a loopback host.
    auth_file: str | None = None
    """Principals file: API keys (by SHA-256) and certificate names, each with an owner and roles."""
    jwt_keys_file: Annotated[str | None, Flag("--jwt-keys")] = None
    """JWKS file or PEM public key for bearer tokens (JWT)."""
    jwt_issuer: str = ""
    """Issuer a token must name (empty: not checked)."""
    jwt_audience: str = ""
    """Audience a token must name (empty: not checked)."""
    jwt_owner_claim: str = "sub"
    """Claim naming the owner."""
    jwt_roles_claim: str = "roles"
    """Claim naming the roles."""
    allow_unauthenticated: bool = False
    """Serve a non-loopback host without authentication (every caller is default_owner)."""
    # With a certificate and key plaintext is refused; with a client CA too, clients must present
    # a certificate it signed (mTLS).
    tls_cert_file: Annotated[str | None, Flag("--tls-cert")] = None
    """Server certificate."""
    tls_key_file: Annotated[str | None, Flag("--tls-key")] = None
    """Server private key."""
    tls_client_ca_file: Annotated[str | None, Flag("--tls-client-ca")] = None
    """Require client certificates of this CA."""
    # The sidecar over TLS (required when it is not on loopback); it authenticates this server
    # by the API key or by the certificate's name in its principals file.
    ratelimiter_tls_ca_file: Annotated[str | None, Flag("--ratelimiter-tls-ca")] = None
    """CA of the sidecar's certificate."""
    ratelimiter_tls_cert_file: Annotated[str | None, Flag("--ratelimiter-tls-cert")] = None
    """Client certificate for the sidecar (mTLS)."""
    ratelimiter_tls_key_file: Annotated[str | None, Flag("--ratelimiter-tls-key")] = None
    """Its private key."""
    ratelimiter_api_key: str | None = None
    """API key for the sidecar."""

    # Admission per tenant (owner), per replica; beyond either, RESOURCE_EXHAUSTED with RetryInfo.
    tenant_runs_per_second: float = 0.0
    """Runs each tenant may start per second (0: no limit)."""
    tenant_runs_burst: int = 20
    """Runs a tenant may start at once."""
    tenant_max_runs_in_flight: int = 0
    """Runs each tenant may have queued or running (0: no limit)."""

    # -- input limits (INVALID_ARGUMENT with a field violation beyond them) -------------------
    max_payload_bytes: int = 1024 * 1024
    """Largest JSON payload in one *_json field, in bytes."""
    max_payload_depth: int = 64
    """Deepest JSON nesting."""
    max_list_entries: int = 256
    """Most entries in one repeated or map field of a request (event kinds, statuses, nodes...)."""
    max_string_bytes: int = 1024
    """Longest plain string field (ids, names, tokens), in bytes."""

    # -- LangGraph's HTTP API (server/http, docs/http-api.md) --
    http_port: Annotated[int | None, Field(ge=0, le=65535)] = None
    """Port of a second listener, in the same process, serving LangGraph's HTTP API (the one
    langgraph-sdk and useStream call) on `host`; unset or 0: no HTTP listener."""
    http_cors_origins: Annotated[list[str], Flag("--http-cors-origin")] = []
    """Origins browsers may call the HTTP API from (CORS; "*": any; none: no CORS headers);
    the flag repeats, the variable is a JSON list."""
    http_cors_private_network: bool = True
    """Answer Chrome's Private Network Access preflight for those origins, so a hosted page
    (LangGraph Studio) may call a server on localhost."""

    # -- the inspector (server/core/inspector, docs/inspector.md) --
    # Every replica rewrites its row in the replicas table this often; the overview shows a
    # replica as not alive once its row is older than three of its intervals.
    inspector_heartbeat_seconds: Annotated[float, Field(gt=0)] = 2.0
    """Seconds between two heartbeats of this replica (its row in the replicas table)."""
    # The server reads a run's trace from here (Jaeger's HTTP query API, /api/traces/<id>) after
    # checking that the caller owns the run; browsers never call Jaeger themselves.
    jaeger_query_url: Annotated[str | None, Flag("--jaeger-query")] = None
    """Base URL of Jaeger's query API (e.g. http://127.0.0.1:16686); unset: no traces in the inspector."""
    jaeger_ui_url: Annotated[str | None, Flag("--jaeger-ui")] = None
    """Base URL of a Jaeger web UI the inspector links each run's trace to (<url>/trace/<id>);
    unset: no link."""

    # -- crons and webhooks (server/core/schedules, docs/crons.md, docs/webhooks.md) ----------
    # Each replica also wakes at the next due time it knows of; this bounds how late a cron
    # created on another replica is seen.
    cron_poll_seconds: float = 0.5
    """How often a replica looks for due crons at most."""
    # Loopback, private, link-local, unique-local, IPv4-mapped-IPv6 and other special
    # addresses are refused otherwise, on the address actually connected to (after DNS):
    # a webhook must not become a way into the operator's network.
    webhook_allow: list[str] = []
    """Non-public webhook destinations to allow anyway: an address or network, optionally with
    a port ("10.0.0.0/8", "127.0.0.1:8080", "[::1]:8080"); the flag repeats, the variable is a
    JSON list."""
    webhook_timeout_seconds: float = 10.0
    """Seconds one webhook attempt may take."""
    # Then the delivery is a dead letter, listed by WebhookService.
    webhook_max_attempts: Annotated[int, Field(ge=1)] = 8
    """Attempts per webhook delivery."""
    # Doubling per attempt up to the cap, half of each delay random (jitter), so receivers
    # coming back are not hit by every delivery at once.
    webhook_backoff_seconds: float = 1.0
    """Delay before the first webhook retry, in seconds."""
    webhook_backoff_max_seconds: float = 600.0
    """Longest delay between two webhook attempts, in seconds."""
    # scheme://host:port is one destination; counted across every replica.
    webhook_max_per_destination: Annotated[int, Field(ge=1)] = 4
    """Webhook deliveries in flight to one destination at once."""
    webhook_poll_seconds: float = 0.5
    """How often a replica looks for due webhook deliveries without being told."""
