"""The `stepstream` command: each part of the project registers its own verbs."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="stepstream",
    help="Serve LangGraph workflows over gRPC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = (
    "stepstream.cli.server_commands",
    "stepstream.cli.client_commands",
    "stepstream.cli.store_commands",
    "stepstream.cli.assistant_commands",
    "stepstream.cli.webhook_commands",
    "stepstream.cli.cron_commands",
    "stepstream.mockapi.cli",
    "stepstream.ratelimiter.cli",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


if __name__ == "__main__":
    app()
