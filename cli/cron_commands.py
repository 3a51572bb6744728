"""`stepstream crons ...`: runs started on a schedule, through the Python SDK."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

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
from stepstream.client import BusyPolicy, Cron, Json, RunOptions, StepstreamClient
from stepstream.client.crons import Crons

crons_app = typer.Typer(
    help="Crons: runs started on a schedule (exactly once per due time).", no_args_is_help=True
)

SCHEDULE = typer.Argument(
    ...,
    help='A cron expression, 5 fields or 6 with leading seconds ("*/10 * * * * *"), or a number '
    "of seconds (an interval).",
)
GRAPH = typer.Option(None, "--graph", "-g", help="The graph each fire runs.")
ASSISTANT = typer.Option(None, "--assistant", help="Or the assistant each fire runs as.")
SESSION = typer.Option(
    None, "--session", "-s", help="The session every fire runs on (default: a new one each)."
)
INPUT = typer.Option(None, "--input", "-i", help="Each run's input, JSON.")
CONTEXT = typer.Option(None, "--context", "-c", help="Each run's context, a JSON object.")
CONFIG = typer.Option(None, "--config", help="Each run's configurable values, a JSON object.")
METADATA = typer.Option(None, "--metadata", "-m", help="Each run's metadata, a JSON object.")
TIMEZONE = typer.Option(None, "--timezone", "--tz", help="IANA time zone of the expression (default UTC).")
WEBHOOK = typer.Option(None, "--webhook", help="URL POSTed each run when it ends (docs/webhooks.md).")
BUSY = typer.Option(
    None, "--busy", help="A fire on a busy session: reject (default), enqueue, interrupt, rollback."
)
MISFIRE = typer.Option("skip", "--misfire", help="Due times missed by every replica: skip, or fire_once.")
NEXT = 5


def _schedule(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def _object(text: str | None, option: str) -> dict[str, Json] | None:
    value = _parse_json(text, option)
    if value is not None and not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=option)
    return value


def _show(cron: Cron) -> None:
    schedule = f"every {cron.schedule:g} s" if isinstance(cron.schedule, float) else repr(cron.schedule)
    target = f"assistant {cron.assistant_id}" if cron.assistant_id else f"graph {cron.graph_id}"
    state = "paused" if cron.paused else "active"
    out.print(f"cron {cron.cron_id}  {schedule}  {target}  {state}", markup=False, highlight=False)
    for label, value in (
        ("timezone", cron.timezone),
        ("session", cron.session_id),
        ("input", orjson.dumps(cron.input).decode() if cron.input is not None else ""),
        ("webhook", cron.webhook),
    ):
        if value:
            out.print(f"{label}: {value}", markup=False, highlight=False)
    for when in cron.next_fire_times:
        out.print(f"next: {_when(when)}", markup=False, highlight=False)


def _run(
    address: list[str] | None, api_key: str | None, token: str | None, tls_ca: str | None
) -> Callable[[Callable[[StepstreamClient], Coroutine[Any, Any, None]]], None]:
    def execute(call: Callable[[StepstreamClient], Coroutine[Any, Any, None]]) -> None:
        async def work() -> None:
            async with _client(address, api_key, token, tls_ca) as client:
                await call(client)

        _execute(work)

    return execute


def _spec(
    graph: str | None,
    assistant: str | None,
    session: str | None,
    input: str | None,
    context: str | None,
    config: str | None,
    metadata: str | None,
    timezone: str | None,
    webhook: str | None,
    busy: str | None,
    misfire: str,
) -> dict[str, Any]:
    options = RunOptions(
        configurable=_object(config, "--config"),
        metadata=_object(metadata, "--metadata"),
        busy_policy=BusyPolicy(busy) if busy else None,
    )
    return {
        "graph_id": graph,
        "assistant_id": assistant,
        "session_id": session,
        "input": _parse_json(input, "--input"),
        "context": _object(context, "--context"),
        "options": options,
        "timezone": timezone,
        "webhook": webhook,
        "misfire_policy": misfire,
    }


@crons_app.command("create")
def create(
    schedule: str = SCHEDULE,
    graph: str | None = GRAPH,
    assistant: str | None = ASSISTANT,
    session: str | None = SESSION,
    input: str | None = INPUT,
    context: str | None = CONTEXT,
    config: str | None = CONFIG,
    metadata: str | None = METADATA,
    timezone: str | None = TIMEZONE,
    webhook: str | None = WEBHOOK,
    busy: str | None = BUSY,
    misfire: str = MISFIRE,
    cron_id: str | None = typer.Option(None, "--id", help="Its id (default: a new one)."),
    paused: bool = typer.Option(False, "--paused", help="Create it paused."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Create a cron; shows its next fire times."""
    spec = _spec(
        graph, assistant, session, input, context, config, metadata, timezone, webhook, busy, misfire
    )

    async def call(client: StepstreamClient) -> None:
        _show(await client.crons.create(_schedule(schedule), cron_id=cron_id, paused=paused, **spec))

    _run(address, api_key, token, tls_ca)(call)


@crons_app.command("update")
def update(
    cron_id: str = typer.Argument(..., help="Cron id."),
    schedule: str = SCHEDULE,
    graph: str | None = GRAPH,
    assistant: str | None = ASSISTANT,
    session: str | None = SESSION,
    input: str | None = INPUT,
    context: str | None = CONTEXT,
    config: str | None = CONFIG,
    metadata: str | None = METADATA,
    timezone: str | None = TIMEZONE,
    webhook: str | None = WEBHOOK,
    busy: str | None = BUSY,
    misfire: str = MISFIRE,
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Replace a cron's schedule and runs (as create takes them); it restarts from now."""
    spec = _spec(
        graph, assistant, session, input, context, config, metadata, timezone, webhook, busy, misfire
    )

    async def call(client: StepstreamClient) -> None:
        _show(await client.crons.update(cron_id, _schedule(schedule), **spec))

    _run(address, api_key, token, tls_ca)(call)


def _one(verb: str, doc: str, act: Callable[[Crons, str], Awaitable[Cron]]) -> None:
    """A verb that takes a cron id and shows the cron (get, pause, resume)."""

    def command(
        cron_id: str = typer.Argument(..., help="Cron id."),
        address: list[str] | None = ADDRESS,
        api_key: str | None = API_KEY,
        token: str | None = TOKEN,
        tls_ca: str | None = TLS_CA,
    ) -> None:
        async def call(client: StepstreamClient) -> None:
            _show(await act(client.crons, cron_id))

        _run(address, api_key, token, tls_ca)(call)

    command.__doc__ = doc
    crons_app.command(verb)(command)


_one("get", "Show a cron and its next fire times.", Crons.get)
_one("pause", "Pause a cron: it does not fire until resumed.", Crons.pause)
_one("resume", "Resume a cron, scheduling from now.", Crons.resume)


@crons_app.command("list")
def list_crons(
    session: str | None = typer.Option(None, "--session", "-s", help="Only the crons of this session."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many (newest first)."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """List crons, newest first, with their next fire time."""

    async def call(client: StepstreamClient) -> None:
        found = [c async for c in client.crons.list(session_id=session, limit=limit)]
        rows = [
            [
                c.cron_id,
                f"every {c.schedule:g} s" if isinstance(c.schedule, float) else c.schedule,
                c.assistant_id or c.graph_id,
                "paused" if c.paused else "active",
                _when(c.next_fire_times[0]) if c.next_fire_times else "",
            ]
            for c in found
        ]
        _table(["cron", "schedule", "runs", "state", "next"], rows)

    _run(address, api_key, token, tls_ca)(call)


@crons_app.command("fires")
def fires(
    cron_id: str = typer.Argument(..., help="Cron id."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many (newest first)."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """What became of each due time of a cron: ran (its run), rejected, skipped, failed."""

    async def call(client: StepstreamClient) -> None:
        found = [f async for f in client.crons.fires(cron_id, limit=limit)]
        rows = [[_when(f.due_at), f.outcome, f.run_id, f.detail] for f in found]
        _table(["due", "outcome", "run", "detail"], rows)

    _run(address, api_key, token, tls_ca)(call)


@crons_app.command("delete")
def delete(
    cron_id: str = typer.Argument(..., help="Cron id."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Delete a cron and its fire records (its runs stay)."""

    async def call(client: StepstreamClient) -> None:
        await client.crons.delete(cron_id)
        typer.echo(f"deleted cron {cron_id}")

    _run(address, api_key, token, tls_ca)(call)


def register(app: typer.Typer) -> None:
    app.add_typer(crons_app, name="crons")
