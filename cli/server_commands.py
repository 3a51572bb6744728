"""Server-side verbs: serve, db."""

from __future__ import annotations

import typer

from stepstream.server.settings import ServerSettings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    db: str = typer.Option(ServerSettings.db_url, "--db", help="SQLAlchemy URL."),
    revision: str = typer.Option("head", help="Alembic revision."),
) -> None:
    """Apply the Alembic migrations up to REVISION."""
    from stepstream.server.storage.db import upgrade

    upgrade(db, revision)
    typer.echo(f"schema of {db} is at {revision}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
