"""Server-side verbs: serve, db."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import typer

from stepstream.cli.settings import Settings, SettingsInputError, env_var, load
from stepstream.cli.settings_options import settings_command
from stepstream.server.cluster import ClusterSettings
from stepstream.server.settings import ServerSettings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
S = TypeVar("S", bound=Settings)


def _load(model: type[S], given: dict[str, Any]) -> S:
    """The command's settings, or exit 2 naming the flag or variable whose value is refused."""
    try:
        return load(model, given)
    except SettingsInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(
    db: str = typer.Option(
        ServerSettings.model_fields["db_url"].default,
        "--db",
        envvar=env_var(ServerSettings, "db_url"),
        help="SQLAlchemy URL.",
    ),
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


def _serve(given: dict[str, Any]) -> None:
    from stepstream.server.api.auth import check_security
    from stepstream.server.api.server import run_forever
    from stepstream.server.core.registry import ConfigError, read_config
    from stepstream.telemetry import TelemetryConfigError

    settings = _load(ServerSettings, given)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.config_path:
        try:
            read_config(settings.config_path)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if settings.limits_path and not settings.ratelimiter_address:
        from stepstream.ratelimiter.config import ConfigError as LimitsError
        from stepstream.ratelimiter.config import load_settings

        try:
            load_settings(settings.limits_path)
        except LimitsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    try:
        check_security(settings)
    except ValueError as exc:  # a file that cannot be read or used, a refused exposure
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        if settings.workers > 1:
            from stepstream.server.workers import WorkerFailed, serve_workers

            try:
                serve_workers(settings, settings.log_level.upper())
            except (WorkerFailed, OSError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        else:
            run_forever(settings)
    except (ConfigError, TelemetryConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


serve = settings_command(ServerSettings, _serve, "Serve the configured graphs over gRPC.")


def demo(
    sessions: int = typer.Option(300, help="Research sessions to run."),
    concurrency: int = typer.Option(300, help="Sessions open at once."),
    http_port: int = typer.Option(0, help="Port of the HTTP listener serving the inspector (0: a free one)."),
    linger: float = typer.Option(0.0, help="Seconds to keep serving the inspector after the sessions end."),
) -> None:
    """Run the research assistant for many concurrent sessions on the embedded defaults."""
    from stepstream.cli.demo import demo as run_demo

    run_demo(sessions, concurrency, http_port, linger)


def _up(given: dict[str, Any]) -> None:
    import signal
    import threading

    from stepstream.server.cluster import LocalCluster
    from stepstream.server.storage.db import is_sqlite

    settings = _load(ClusterSettings, given)
    if is_sqlite(settings.db_url) and settings.replicas > 1:
        typer.echo("warning: replicas on one SQLite file share its write lock; use PostgreSQL", err=True)
    if settings.limits_path and not settings.redis_url and settings.replicas > 1:
        typer.echo("warning: without --redis each sidecar keeps its own budget", err=True)
    grace = settings.shutdown_grace_seconds
    cluster = LocalCluster(
        settings.db_url,
        settings.config_path,
        settings.replicas,
        limits=settings.limits_path,
        redis_url=settings.redis_url,
        serve_args=["--grace", str(grace)],
        http_port=settings.http_port,
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
        http = f", HTTP {replica.http_url}" if replica.http_url else ""
        typer.echo(f"{replica.name} serving on {replica.address}{http}{sidecar}")
    typer.echo(f"cluster ready: {','.join(cluster.addresses)}", color=False)
    try:
        stopping.wait()
    finally:
        typer.echo("stopping the cluster (each replica drains)")
        cluster.stop(grace + 10)


up = settings_command(
    ClusterSettings,
    _up,
    "Start a local cluster on loopback ports: N replicas, each with its limiter sidecar.",
)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("serve")(serve)
    app.command("up")(up)
    app.command("demo")(demo)
