"""Operator verbs for webhooks: `stepstream webhooks secret issue|rotate|show` (on the database)."""

from __future__ import annotations

import asyncio

import typer

from stepstream.server.settings import ServerSettings

DB = typer.Option(ServerSettings().db_url, "--db", envvar="STEPSTREAM_DB", help="SQLAlchemy URL.")
TENANT = typer.Option(..., "--tenant", help="The tenant (owner) whose webhooks the secret signs.")


def register(app: typer.Typer) -> None:
    webhooks = typer.Typer(help="Webhook signing secrets (operators).", no_args_is_help=True)
    secret = typer.Typer(help="A tenant's signing secret.", no_args_is_help=True)
    webhooks.add_typer(secret, name="secret")
    app.add_typer(webhooks, name="webhooks")

    @secret.command("issue")
    def issue(db: str = DB, tenant: str = TENANT) -> None:
        """Issue the tenant's first secret and print it (give it to the receiver)."""
        from stepstream.server.storage.webhook_secrets import SecretExists, issue_secret

        try:
            typer.echo(asyncio.run(issue_secret(db, tenant, rotate=False, overlap_seconds=0)))
        except SecretExists as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    @secret.command("rotate")
    def rotate(
        db: str = DB,
        tenant: str = TENANT,
        overlap: float = typer.Option(
            86400.0, help="Seconds the old secret keeps signing beside the new one."
        ),
    ) -> None:
        """Issue a new secret and print it; both sign deliveries during the overlap."""
        from stepstream.server.storage.webhook_secrets import issue_secret

        typer.echo(asyncio.run(issue_secret(db, tenant, rotate=True, overlap_seconds=overlap)))

    @secret.command("show")
    def show(db: str = DB, tenant: str = TENANT) -> None:
        """The tenant's secrets in force: the current one, then rotated ones with their expiry."""
        from stepstream.server.storage.webhook_secrets import secrets_of

        for value, expires in asyncio.run(secrets_of(db, tenant)):
            typer.echo(value if expires is None else f"{value}  (signs until {expires:.0f})")
