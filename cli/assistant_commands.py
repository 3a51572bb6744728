"""`stepstream assistants ...`: graphs with saved, versioned settings, through the Python SDK."""

from __future__ import annotations

import orjson
import typer

from stepstream.cli.client_commands import (
    ADDRESS,
    API_KEY,
    TLS_CA,
    TOKEN,
    _client,
    _execute,
    _parse_json,
    _table,
    _when,
    out,
)
from stepstream.client import Assistant, Json

assistants_app = typer.Typer(
    help="Assistants: a graph with saved configurable values, context and metadata, versioned.",
    no_args_is_help=True,
)

CONFIG = typer.Option(None, "--config", help="Configurable values, a JSON object.")
CONTEXT = typer.Option(None, "--context", "-c", help="The context runs get, a JSON object.")
METADATA = typer.Option(None, "--metadata", "-m", help="Metadata, a JSON object.")
NAME = typer.Option(None, "--name", help="A name to find it by.")
DESCRIPTION = typer.Option(None, "--description", help="What it is for.")


def _object(text: str | None, option: str) -> dict[str, Json] | None:
    value = _parse_json(text, option)
    if value is not None and not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=option)
    return value


def _text(value: Json) -> str:
    return orjson.dumps(value).decode() if value else ""


def _show(assistant: Assistant) -> None:
    default = "  (the graph's default)" if assistant.is_default else ""
    out.print(
        f"assistant {assistant.assistant_id}  graph {assistant.graph_id}  "
        f"version {assistant.version}{default}",
        markup=False,
        highlight=False,
    )
    for label, value in (
        ("name", assistant.name),
        ("description", assistant.description),
        ("config", _text(assistant.config)),
        ("context", _text(assistant.context)),
        ("metadata", _text(assistant.metadata)),
        ("updated", _when(assistant.updated_at)),
    ):
        if value:
            out.print(f"{label}: {value}", markup=False, highlight=False)


def _rows(found: list[Assistant]) -> list[list[str]]:
    return [
        [a.assistant_id, a.graph_id, str(a.version), a.name, _text(a.metadata), _when(a.updated_at)]
        for a in found
    ]


HEADERS = ["assistant", "graph", "version", "name", "metadata", "updated"]


@assistants_app.command("create")
def create(
    graph: str = typer.Argument(..., help="Graph id."),
    assistant_id: str | None = typer.Option(None, "--id", help="Its id (default: a new one)."),
    name: str | None = NAME,
    description: str | None = DESCRIPTION,
    config: str | None = CONFIG,
    context: str | None = CONTEXT,
    metadata: str | None = METADATA,
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Create an assistant of GRAPH (version 1)."""
    fields = (_object(config, "--config"), _object(context, "--context"), _object(metadata, "--metadata"))

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            made = await client.assistants.create(
                graph,
                assistant_id=assistant_id,
                name=name,
                description=description,
                config=fields[0],
                context=fields[1],
                metadata=fields[2],
            )
        _show(made)

    _execute(work)


@assistants_app.command("show")
def show(
    assistant_id: str = typer.Argument(..., help="Assistant id (a graph's id: its default assistant)."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Show an assistant with its live version's settings."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            _show(await client.assistants.get(assistant_id))

    _execute(work)


@assistants_app.command("update")
def update(
    assistant_id: str = typer.Argument(..., help="Assistant id."),
    name: str | None = NAME,
    description: str | None = DESCRIPTION,
    config: str | None = CONFIG,
    context: str | None = CONTEXT,
    metadata: str | None = METADATA,
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Save a new version (what is not given stays as it is) and make it live."""
    fields = (_object(config, "--config"), _object(context, "--context"), _object(metadata, "--metadata"))

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            updated = await client.assistants.update(
                assistant_id,
                name=name,
                description=description,
                config=fields[0],
                context=fields[1],
                metadata=fields[2],
            )
        _show(updated)

    _execute(work)


@assistants_app.command("set-version")
def set_version(
    assistant_id: str = typer.Argument(..., help="Assistant id."),
    version: int = typer.Argument(..., help="The saved version to make live."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Make a saved version the live one."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            _show(await client.assistants.set_version(assistant_id, version))

    _execute(work)


@assistants_app.command("versions")
def versions(
    assistant_id: str = typer.Argument(..., help="Assistant id."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many (newest first)."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """List an assistant's saved versions, newest first."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            found = [v async for v in client.assistants.versions(assistant_id, limit=limit)]
        rows = [
            [str(v.version), v.name, _text(v.config), _text(v.context), _when(v.updated_at)] for v in found
        ]
        _table(["version", "name", "config", "context", "saved"], rows)

    _execute(work)


@assistants_app.command("list")
def search(
    graph: str | None = typer.Option(None, "--graph", "-g", help="Only assistants of this graph."),
    metadata: str | None = typer.Option(
        None, "--metadata", "-m", help="Only those whose metadata contains this JSON object."
    ),
    name: str | None = typer.Option(None, "--name", help="Only those whose name contains this."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many (newest first)."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """List (search) assistants, newest first."""
    wanted = _object(metadata, "--metadata")

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            found = [
                a
                async for a in client.assistants.search(
                    graph_id=graph, metadata=wanted, name=name, limit=limit
                )
            ]
        _table(HEADERS, _rows(found))

    _execute(work)


@assistants_app.command("delete")
def delete(
    assistant_id: str = typer.Argument(..., help="Assistant id."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Delete an assistant and its versions (a graph's default assistant cannot be)."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            await client.assistants.delete(assistant_id)
        typer.echo(f"deleted assistant {assistant_id}")

    _execute(work)


def register(app: typer.Typer) -> None:
    app.add_typer(assistants_app, name="assistants")
