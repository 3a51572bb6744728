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
) -> None:
    """Run the rate-limiter sidecar: one token budget per external API, shared through Redis."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config, _extra_limits(limit or []), redis_url=redis, host=host, port=port)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None

    from stepstream.ratelimiter.server import run

    def ready(bound: int) -> None:
        typer.echo(f"ratelimiter listening on {settings.host}:{bound}")

    run(settings, ready)


def register(app: typer.Typer) -> None:
    app.command("ratelimiter")(ratelimiter)
