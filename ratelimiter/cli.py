"""`stepstream ratelimiter`: run the rate-limiter sidecar."""

from __future__ import annotations

import logging
import pathlib
from typing import Annotated

import typer

from stepstream.ratelimiter.config import ConfigError, load_settings


def _extra_limits(items: list[str]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep:
            raise ConfigError("--limit", item, "expected KEY=LIMIT, e.g. 'arxiv=1 per 3s'")
        extra[key.strip()] = spec.strip()
    return extra


def ratelimiter(
    config: Annotated[
        pathlib.Path | None, typer.Option("--config", "-c", help="Settings and limits (.toml, .yaml)")
    ] = None,
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL shared by every sidecar")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on (0: any free port)")] = None,
    limit: Annotated[
        list[str] | None, typer.Option("--limit", help="Extra limit KEY=LIMIT, e.g. 'arxiv=1 per 3s'")
    ] = None,
    auth_file: Annotated[
        str | None, typer.Option("--auth-file", envvar="STEPSTREAM_AUTH_FILE", help="Principals file")
    ] = None,
    jwt_keys: Annotated[
        str | None, typer.Option("--jwt-keys", envvar="STEPSTREAM_JWT_KEYS", help="JWKS or PEM key for JWTs")
    ] = None,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="Server certificate")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="Its private key")] = None,
    tls_client_ca: Annotated[
        str | None, typer.Option("--tls-client-ca", help="Require client certificates of this CA (mTLS)")
    ] = None,
    allow_unauthenticated: Annotated[
        bool | None, typer.Option("--allow-unauthenticated", help="Serve a non-loopback host without auth")
    ] = None,
) -> None:
    """Run the rate-limiter sidecar: one token budget per external API, shared through Redis."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(
            config,
            _extra_limits(limit or []),
            redis_url=redis,
            host=host,
            port=port,
            auth_file=auth_file,
            jwt_keys_file=jwt_keys,
            tls_cert_file=tls_cert,
            tls_key_file=tls_key,
            tls_client_ca_file=tls_client_ca,
            allow_unauthenticated=allow_unauthenticated or None,
        )
        from stepstream.ratelimiter.auth import auth_interceptor

        auth_interceptor(settings)  # refuse unusable credentials before serving
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None

    from stepstream.ratelimiter.server import run

    def ready(bound: int) -> None:
        typer.echo(f"ratelimiter listening on {settings.host}:{bound}")

    from stepstream.telemetry import TelemetryConfigError

    try:
        run(settings, ready)
    except TelemetryConfigError as exc:
        typer.echo(f"telemetry config error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("ratelimiter")(ratelimiter)
