"""`stepstream ratelimiter`: run the rate-limiter sidecar.

Its flags are the fields of LimiterSettings (ratelimiter/config.py): each is also a
STEPSTREAM_* variable, and both win over the settings file (--config).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import typer

from stepstream.cli.settings import SettingsInputError, env_var, given_values
from stepstream.cli.settings_options import settings_command
from stepstream.ratelimiter.config import ConfigError, LimiterSettings, limit_items, load_settings


def limiter_settings(given: dict[str, Any]) -> LimiterSettings:
    """The sidecar's settings: the flags `given`, then STEPSTREAM_* variables, then its file.

    Limits from flags and variables are added to the file's (the same key: theirs wins), and
    parsed with the file's or the variables' window_margin_ms like the file's own.
    """
    values = given_values(LimiterSettings, given)  # checks each value, naming where it came from
    path = values.pop("config_path", None)
    values.pop("limits", None)
    raw = given.get("limits") or os.environ.get(env_var(LimiterSettings, "limits")) or None
    return load_settings(path, limit_items(raw) if raw else None, **values)


def _ratelimiter(given: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = limiter_settings(given)
        from stepstream.ratelimiter.auth import auth_interceptor

        auth_interceptor(settings)  # refuse unusable credentials before serving
    except SettingsInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
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


ratelimiter = settings_command(
    LimiterSettings,
    _ratelimiter,
    "Run the rate-limiter sidecar: one token budget per external API, shared through Redis.",
)


def register(app: typer.Typer) -> None:
    app.command("ratelimiter")(ratelimiter)
