"""Store verbs: `stepstream store put|get|delete|search|namespaces` over the SDK's `client.store`.

A namespace is written as its labels joined by "/" (`memories/u1`), since a
label may not contain "." but may well be a user id with other punctuation.
"""

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
    _json_text,
    _parse_json,
    _table,
    _when,
)
from stepstream.client import StoreItem

store_app = typer.Typer(help="The long-term store (runtime.store), for your tenant.", no_args_is_help=True)

NAMESPACE_HELP = 'Namespace labels joined by "/", e.g. memories/u1.'


def _namespace(text: str) -> tuple[str, ...]:
    return tuple(text.split("/")) if text else ()


def _show(items: list[StoreItem]) -> None:
    rows = [
        [
            "/".join(i.namespace),
            i.key,
            orjson.dumps(i.value).decode(),
            "" if i.score is None else f"{i.score:.3f}",
            _when(i.updated_at),
        ]
        for i in items
    ]
    _table(["namespace", "key", "value", "score", "updated"], rows)


@store_app.command("put")
def store_put(
    namespace: str = typer.Argument(..., help=NAMESPACE_HELP),
    key: str = typer.Argument(..., help="The item's key."),
    value: str = typer.Argument(..., help="The item's value: a JSON object."),
    ttl: float | None = typer.Option(None, "--ttl", help="Minutes until the item expires."),
    no_index: bool = typer.Option(False, "--no-index", help="Do not embed it for semantic search."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Create or replace an item."""
    parsed = _parse_json(value, "VALUE")
    if not isinstance(parsed, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="VALUE")

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            labels = _namespace(namespace)
            if no_index:
                await client.store.put(labels, key, parsed, ttl=ttl, index=False)
            else:
                await client.store.put(labels, key, parsed, ttl=ttl)
        typer.echo(f"put {namespace} {key}")

    _execute(work)


@store_app.command("get")
def store_get(
    namespace: str = typer.Argument(..., help=NAMESPACE_HELP),
    key: str = typer.Argument(..., help="The item's key."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Print an item's value as JSON (exit code 1 when there is none)."""

    async def work() -> int:
        async with _client(address, api_key, token, tls_ca) as client:
            item = await client.store.get(_namespace(namespace), key)
        if item is None:
            typer.echo(f"no item {key!r} in {namespace}", err=True)
            return 1
        typer.echo(_json_text(item.value))
        return 0

    _execute(work)


@store_app.command("delete")
def store_delete(
    namespace: str = typer.Argument(..., help=NAMESPACE_HELP),
    key: str = typer.Argument(..., help="The item's key."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Delete an item (deleting one that is not there is no error)."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            await client.store.delete(_namespace(namespace), key)
        typer.echo(f"deleted {namespace} {key}")

    _execute(work)


@store_app.command("search")
def store_search(
    namespace_prefix: str = typer.Argument("", help="Only items under this namespace (labels joined by /)."),
    query: str | None = typer.Option(None, "--query", "-q", help="Rank by meaning (needs an index)."),
    filter: str | None = typer.Option(None, "--filter", help='JSON conditions, e.g. {"kind": "pref"}.'),
    limit: int = typer.Option(10, "--limit", "-n", help="At most this many."),
    offset: int = typer.Option(0, "--offset", help="Skip this many first."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Search items under a namespace prefix."""
    conditions = _parse_json(filter, "--filter")
    if conditions is not None and not isinstance(conditions, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--filter")

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            found = await client.store.search(
                _namespace(namespace_prefix), query=query, filter=conditions, limit=limit, offset=offset
            )
        _show(found)

    _execute(work)


@store_app.command("namespaces")
def store_namespaces(
    prefix: str = typer.Option("", "--prefix", help="Labels the namespace starts with (joined by /)."),
    suffix: str = typer.Option("", "--suffix", help="Labels the namespace ends with (joined by /)."),
    max_depth: int | None = typer.Option(None, "--max-depth", help="Cut namespaces to this many labels."),
    limit: int = typer.Option(100, "--limit", "-n", help="At most this many."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """List the namespaces that hold items."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            found = await client.store.list_namespaces(
                prefix=_namespace(prefix), suffix=_namespace(suffix), max_depth=max_depth, limit=limit
            )
        for namespace in found:
            typer.echo("/".join(namespace))

    _execute(work)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
