"""One flat settings object for `stepstream serve`, with each default beside its field."""

from __future__ import annotations

import dataclasses
import enum
import os
import socket


def default_replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


# Connection age of `serve --workers` when none is given (max_connection_age_seconds).
WORKER_CONNECTION_AGE_SECONDS = 60.0


class Durability(enum.StrEnum):
    """When a run's next superstep starts (ServerSettings.durability)."""

    SYNC = "sync"
    ASYNC = "async"


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    # Where the service listens.
    host: str = "127.0.0.1"
    port: int = 50051
    # Server processes sharing the port (`serve --workers`, server/workers.py): one process
    # uses one core; each worker is a replica of its own on the same database.
    workers: int = 1
    # Let other processes listen on the same port (SO_REUSEPORT); set for the workers only,
    # so a second server started by mistake on a taken port fails instead of sharing it.
    reuse_port: bool = False
    # Seconds after which a client connection is asked to reconnect (HTTP/2 GOAWAY); calls in
    # flight, long session streams included, finish on the old one. The kernel hands each new
    # connection to a worker at random, so reconnecting evens out workers that drew many.
    # None: WORKER_CONNECTION_AGE_SECONDS with --workers, never otherwise; 0: never.
    max_connection_age_seconds: float | None = None
    # SQLAlchemy URL; the embedded default is a SQLite file in the working folder.
    db_url: str = "sqlite+aiosqlite:///stepstream.db"
    # Graph registry: a stepstream or langgraph.json file ("graphs": {id: "path:attr"}).
    config_path: str | None = None
    # Apply Alembic migrations at start-up (the embedded default does; a cluster
    # runs `stepstream db upgrade` once instead).
    migrate_on_start: bool = True
    # Name of this replica, recorded on the runs it executes.
    replica: str = dataclasses.field(default_factory=default_replica_name)
    # Owner (tenant) of everything when authentication is off.
    default_owner: str = "local"
    # Per-replica admission: runs executing at once, and runs waiting beyond that.
    max_active_runs: int = 10_000
    max_queued_runs: int = 10_000
    # Seconds a client is told to wait when the queue is full (RetryInfo).
    queue_full_retry_after: float = 1.0
    # Threads for sync (def) graph nodes; they must never block the event loop.
    sync_node_threads: int = 32
    # LangGraph's recursion_limit when a run does not set one.
    default_recursion_limit: int = 25
    # When a run's next superstep starts. "sync": once the last one's checkpoint has committed,
    # so a replica that dies mid-run runs again at most the superstep it was in. "async"
    # (LangGraph's own default): while it commits, so a run's supersteps share commits (more
    # runs/s); a replica that dies may then run again the superstep before too. Either way a
    # superstep is reported finished only once its checkpoint has committed.
    durability: Durability = Durability.SYNC
    # Largest gRPC message accepted or sent, in bytes.
    max_message_bytes: int = 4 * 1024 * 1024
    # Retention, enforced in the background: sessions idle longer than this are
    # deleted with their runs, events and checkpoints (0: keep forever) ...
    session_ttl_seconds: float = 0.0
    # ... and each session keeps at most this many checkpoints (0: all).
    keep_checkpoints: int = 0
    retention_interval_seconds: float = 60.0
    # Seconds runs get to reach a superstep boundary on SIGTERM before they are
    # cancelled (their last checkpoint stays, so they can be continued).
    shutdown_grace_seconds: float = 10.0
    # Rate limits for external APIs, reached by graph nodes through the run's context:
    # the sidecar at this address (one budget for every replica), or else an in-process
    # limiter over this limits file (the single-machine default); neither: no limiter.
    ratelimiter_address: str | None = None
    limits_path: str | None = None
    # Leases: a replica holds each run it executes for this long and renews it every
    # renew interval; a run whose lease lapsed (its replica died) is taken over by another.
    lease_seconds: float = 3.0
    lease_renew_seconds: float = 1.0
    # How often each replica looks for queued runs and lapsed leases without being told
    # (PostgreSQL tells replicas at once through notifications; this is the backstop).
    queue_poll_seconds: float = 0.5
    # When the sidecar cannot be reached: "closed" fails the node's acquire (its run fails
    # cleanly), "local" grants from a conservative in-process budget (each limit divided by
    # ratelimiter_expected_replicas) until the sidecar answers again.
    ratelimiter_on_unavailable: str = "closed"
    ratelimiter_expected_replicas: int = 1
    # Group commit: most writes committed in one transaction.
    max_writes_per_commit: int = 5_000
    # While the database cannot be reached (restart, failover), group commits and reads are
    # retried for up to this long before the calls waiting on them fail.
    db_retry_seconds: float = 30.0

    # -- who may call (SECURITY.md) ----------------------------------------------------------
    # Principals file: API keys (by SHA-256) and client-certificate names, each mapped to an
    # owner and roles (auth/credentials.py). Authentication is on when this or a JWT key set
    # is given; with neither it is off, which is allowed only on a loopback host.
    auth_file: str | None = None
    # JWT bearer tokens: the key set they must be signed with (JWKS file or PEM public key),
    # the expected issuer and audience (empty: not checked), and the claims naming the owner
    # and the roles.
    jwt_keys_file: str | None = None
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_owner_claim: str = "sub"
    jwt_roles_claim: str = "roles"
    # Serve without authentication on a non-loopback host (every caller is default_owner).
    allow_unauthenticated: bool = False
    # TLS for clients: certificate and key (then plaintext is refused); with a client CA,
    # clients must also present a certificate it signed (mTLS).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # The rate-limiter sidecar over TLS (required when it is not on loopback): the CA that
    # signed its certificate, this server's client certificate and key (mTLS), and an API key
    # to present (or authenticate by the certificate's name in the sidecar's principals file).
    ratelimiter_tls_ca_file: str | None = None
    ratelimiter_tls_cert_file: str | None = None
    ratelimiter_tls_key_file: str | None = None
    ratelimiter_api_key: str | None = None

    # Admission per tenant (owner), per replica: runs started per second with this burst
    # (0: unlimited), and runs queued or running at once (0: unlimited). Beyond either,
    # RESOURCE_EXHAUSTED with RetryInfo.
    tenant_runs_per_second: float = 0.0
    tenant_runs_burst: int = 20
    tenant_max_runs_in_flight: int = 0

    # -- input limits (INVALID_ARGUMENT with a field violation beyond them) -------------------
    # Largest JSON payload in one *_json field, in bytes, and its deepest nesting.
    max_payload_bytes: int = 1024 * 1024
    max_payload_depth: int = 64
    # Most entries in one repeated or map field of a request (event kinds, statuses, nodes...).
    max_list_entries: int = 256
    # Longest plain string field (ids, names, tokens), in bytes.
    max_string_bytes: int = 1024

    # -- LangGraph's HTTP API (server/http, docs/http-api.md) ----------------------------------
    # Port of a second listener, in the same process, serving LangGraph's HTTP API (the one
    # langgraph-sdk and useStream call) on `host` (0 or None: no HTTP listener).
    http_port: int | None = None
    # Origins browsers may call the HTTP API from (CORS; "*": any; empty: no CORS headers).
    http_cors_origins: tuple[str, ...] = ()
    # Answer Chrome's Private Network Access preflight for those origins, so a hosted page
    # (LangGraph Studio) may call a server on localhost.
    http_cors_private_network: bool = True
