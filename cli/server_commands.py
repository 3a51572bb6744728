"""Server-side verbs: serve, db."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from stepstream.server.settings import WORKER_CONNECTION_AGE_SECONDS, Durability, ServerSettings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
DEFAULTS = ServerSettings()


@db_app.command("upgrade")
def db_upgrade(
    db: str = typer.Option(DEFAULTS.db_url, "--db", help="SQLAlchemy URL."),
    revision: str = typer.Option("head", help="Alembic revision."),
) -> None:
    """Apply the Alembic migrations up to REVISION."""
    import sqlalchemy as sa

    from stepstream.server.storage.db import upgrade

    try:
        upgrade(db, revision)
    except (sa.exc.ArgumentError, sa.exc.OperationalError, sa.exc.InvalidRequestError, ImportError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(f"error: cannot upgrade {db}: {first_line}", err=True)
        typer.echo("  give an async SQLAlchemy URL, e.g. sqlite+aiosqlite:///stepstream.db", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"schema of {db} is at {revision}")


def serve(
    config: str = typer.Option(None, "--config", help="stepstream.json or langgraph.json naming the graphs."),
    db: str = typer.Option(DEFAULTS.db_url, "--db", help="SQLAlchemy URL (SQLite file by default)."),
    host: str = typer.Option(DEFAULTS.host, "--host"),
    port: int = typer.Option(DEFAULTS.port, "--port", help="0 picks a free port (printed at start)."),
    workers: int = typer.Option(
        DEFAULTS.workers, "--workers", min=1, help="Server processes sharing the port (one core each)."
    ),
    max_connection_age: float = typer.Option(
        None,
        "--max-connection-age",
        min=0,
        help="Seconds before a client connection is asked to reconnect, so workers even out "
        f"(default {WORKER_CONNECTION_AGE_SECONDS:.0f} with --workers, else never; 0: never).",
    ),
    max_active_runs: int = typer.Option(DEFAULTS.max_active_runs, help="Runs executing at once."),
    max_queued_runs: int = typer.Option(DEFAULTS.max_queued_runs, help="Runs waiting beyond that."),
    grace: float = typer.Option(DEFAULTS.shutdown_grace_seconds, help="Seconds to drain on SIGTERM."),
    session_ttl: float = typer.Option(0.0, help="Delete sessions idle this many seconds (0: never)."),
    keep_checkpoints: int = typer.Option(0, help="Checkpoints kept per session (0: all)."),
    durability: Annotated[
        Durability,
        typer.Option(
            help="'sync': a superstep starts once the one before is durable; 'async': while it "
            "commits (LangGraph's default, more runs/s; a replica that dies may run one more "
            "superstep again)."
        ),
    ] = DEFAULTS.durability,
    no_migrate: bool = typer.Option(False, "--no-migrate", help="Do not apply migrations at start."),
    ratelimiter: str = typer.Option(None, "--ratelimiter", help="Address of the rate-limiter sidecar."),
    limits: str = typer.Option(None, "--limits", help="Limits file for the in-process limiter (no sidecar)."),
    replica: str = typer.Option(
        None, "--replica", help="Name of this replica (default host-pid); keep it across restarts."
    ),
    ratelimiter_on_unavailable: str = typer.Option(
        DEFAULTS.ratelimiter_on_unavailable,
        help="Sidecar unreachable: 'closed' (acquires fail) or 'local' (a conservative local budget).",
    ),
    ratelimiter_expected_replicas: int = typer.Option(
        DEFAULTS.ratelimiter_expected_replicas, help="Replicas sharing the budget (sizes the local one)."
    ),
    log_level: str = typer.Option("WARNING", help="Python logging level."),
    auth_file: str = typer.Option(
        None,
        "--auth-file",
        envvar="STEPSTREAM_AUTH_FILE",
        help="Principals file: API keys and certificate names.",
    ),
    jwt_keys: str = typer.Option(
        None,
        "--jwt-keys",
        envvar="STEPSTREAM_JWT_KEYS",
        help="JWKS file or PEM public key for bearer tokens.",
    ),
    jwt_issuer: str = typer.Option("", "--jwt-issuer", envvar="STEPSTREAM_JWT_ISSUER"),
    jwt_audience: str = typer.Option("", "--jwt-audience", envvar="STEPSTREAM_JWT_AUDIENCE"),
    jwt_owner_claim: str = typer.Option(DEFAULTS.jwt_owner_claim, "--jwt-owner-claim"),
    jwt_roles_claim: str = typer.Option(DEFAULTS.jwt_roles_claim, "--jwt-roles-claim"),
    allow_unauthenticated: bool = typer.Option(
        False, "--allow-unauthenticated", help="Serve a non-loopback host without authentication."
    ),
    tls_cert: str = typer.Option(
        None, "--tls-cert", envvar="STEPSTREAM_TLS_CERT", help="Server certificate."
    ),
    tls_key: str = typer.Option(None, "--tls-key", envvar="STEPSTREAM_TLS_KEY", help="Server private key."),
    tls_client_ca: str = typer.Option(
        None,
        "--tls-client-ca",
        envvar="STEPSTREAM_TLS_CLIENT_CA",
        help="Require client certificates of this CA.",
    ),
    ratelimiter_tls_ca: str = typer.Option(
        None, "--ratelimiter-tls-ca", help="CA of the sidecar's certificate."
    ),
    ratelimiter_tls_cert: str = typer.Option(
        None, "--ratelimiter-tls-cert", help="Client certificate (mTLS)."
    ),
    ratelimiter_tls_key: str = typer.Option(None, "--ratelimiter-tls-key", help="Its private key."),
    ratelimiter_api_key: str = typer.Option(
        None,
        "--ratelimiter-api-key",
        envvar="STEPSTREAM_RATELIMITER_API_KEY",
        help="API key for the sidecar.",
    ),
    tenant_runs_per_second: float = typer.Option(
        DEFAULTS.tenant_runs_per_second, help="Runs each tenant may start per second (0: no limit)."
    ),
    tenant_runs_burst: int = typer.Option(
        DEFAULTS.tenant_runs_burst, help="Runs a tenant may start at once."
    ),
    tenant_max_runs_in_flight: int = typer.Option(
        DEFAULTS.tenant_max_runs_in_flight, help="Runs each tenant may have queued or running (0: no limit)."
    ),
    max_payload_bytes: int = typer.Option(DEFAULTS.max_payload_bytes, help="Largest JSON payload field."),
    max_payload_depth: int = typer.Option(DEFAULTS.max_payload_depth, help="Deepest JSON nesting."),
    http_port: int = typer.Option(
        0,
        "--http-port",
        envvar="STEPSTREAM_HTTP_PORT",
        help="Also serve LangGraph's HTTP API on this port (0: off).",
    ),
    http_cors_origin: list[str] = typer.Option(  # noqa: B008 (typer's way of declaring a flag)
        [], "--http-cors-origin", help="An origin browsers may call the HTTP API from (repeat; '*': any)."
    ),
) -> None:
    """Serve the configured graphs over gRPC."""
    from stepstream.server.api.auth import check_security
    from stepstream.server.api.server import run_forever
    from stepstream.server.core.registry import ConfigError, read_config
    from stepstream.telemetry import TelemetryConfigError

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config:
        try:
            read_config(config)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if limits and not ratelimiter:
        from stepstream.ratelimiter.config import ConfigError as LimitsError
        from stepstream.ratelimiter.config import load_settings

        try:
            load_settings(limits)
        except LimitsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    settings = ServerSettings(
        replica=replica or DEFAULTS.replica,
        host=host,
        port=port,
        workers=workers,
        max_connection_age_seconds=max_connection_age,
        db_url=db,
        config_path=config,
        migrate_on_start=not no_migrate,
        max_active_runs=max_active_runs,
        max_queued_runs=max_queued_runs,
        shutdown_grace_seconds=grace,
        session_ttl_seconds=session_ttl,
        keep_checkpoints=keep_checkpoints,
        durability=durability,
        ratelimiter_address=ratelimiter,
        limits_path=limits,
        ratelimiter_on_unavailable=ratelimiter_on_unavailable,
        ratelimiter_expected_replicas=ratelimiter_expected_replicas,
        auth_file=auth_file,
        jwt_keys_file=jwt_keys,
        jwt_issuer=jwt_issuer,
        jwt_audience=jwt_audience,
        jwt_owner_claim=jwt_owner_claim,
        jwt_roles_claim=jwt_roles_claim,
        allow_unauthenticated=allow_unauthenticated,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        tls_client_ca_file=tls_client_ca,
        ratelimiter_tls_ca_file=ratelimiter_tls_ca,
        ratelimiter_tls_cert_file=ratelimiter_tls_cert,
        ratelimiter_tls_key_file=ratelimiter_tls_key,
        ratelimiter_api_key=ratelimiter_api_key,
        max_payload_bytes=max_payload_bytes,
        max_payload_depth=max_payload_depth,
        tenant_runs_per_second=tenant_runs_per_second,
        tenant_runs_burst=tenant_runs_burst,
        tenant_max_runs_in_flight=tenant_max_runs_in_flight,
        http_port=http_port or None,
        http_cors_origins=tuple(http_cors_origin),
    )
    if ratelimiter_on_unavailable not in ("closed", "local"):
        typer.echo("error: --ratelimiter-on-unavailable must be 'closed' or 'local'", err=True)
        raise typer.Exit(2)
    try:
        check_security(settings)
    except ValueError as exc:  # a file that cannot be read or used, a refused exposure
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        if workers > 1:
            from stepstream.server.workers import WorkerFailed, serve_workers

            try:
                serve_workers(settings, log_level.upper())
            except (WorkerFailed, OSError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        else:
            run_forever(settings)
    except (ConfigError, TelemetryConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def demo(
    sessions: int = typer.Option(300, help="Research sessions to run."),
    concurrency: int = typer.Option(300, help="Sessions open at once."),
) -> None:
    """Run the research assistant for many concurrent sessions on the embedded defaults."""
    from stepstream.cli.demo import demo as run_demo

    run_demo(sessions, concurrency)


def up(
    config: str = typer.Option(..., "--config", help="stepstream.json or langgraph.json naming the graphs."),
    db: str = typer.Option(..., "--db", help="SQLAlchemy URL every replica shares (PostgreSQL)."),
    replicas: int = typer.Option(3, "--replicas", min=1, help="Replicas to start."),
    limits: str = typer.Option(None, "--limits", help="Limits file: each replica gets a sidecar over it."),
    redis: str = typer.Option(None, "--redis", help="Redis URL the sidecars share (one budget)."),
    grace: float = typer.Option(DEFAULTS.shutdown_grace_seconds, help="Seconds each replica drains."),
) -> None:
    """Start a local cluster on loopback ports: N replicas, each with its limiter sidecar."""
    import signal
    import threading

    from stepstream.server.cluster import LocalCluster
    from stepstream.server.storage.db import is_sqlite

    if is_sqlite(db) and replicas > 1:
        typer.echo("warning: replicas on one SQLite file share its write lock; use PostgreSQL", err=True)
    if limits and not redis and replicas > 1:
        typer.echo("warning: without --redis each sidecar keeps its own budget", err=True)
    cluster = LocalCluster(
        db, config, replicas, limits=limits, redis_url=redis, serve_args=["--grace", str(grace)]
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        cluster.start()
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for replica in cluster.replicas:
        sidecar = f" (limiter {replica.limiter.address})" if replica.limiter else ""
        typer.echo(f"{replica.name} serving on {replica.address}{sidecar}")
    typer.echo(f"cluster ready: {','.join(cluster.addresses)}", color=False)
    try:
        stopping.wait()
    finally:
        typer.echo("stopping the cluster (each replica drains)")
        cluster.stop(grace + 10)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("serve")(serve)
    app.command("up")(up)
    app.command("demo")(demo)
