"""The `stepstream mockapi` verb: serve the Wikipedia/arXiv/LLM-shaped mock APIs until stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import signal
import sys
from typing import Annotated

import typer

from stepstream.mockapi.config import ARXIV, BUILTIN, WIKIPEDIA, MockApiConfig, load_file, parse_range_ms
from stepstream.mockapi.limits import UNLIMITED, Limit, Shape, parse_shape
from stepstream.mockapi.runner import READY_PREFIX, MockApiServer

DEFAULT_PORT = 8765


def parse_latency(text: str) -> tuple[float, float]:
    """`20-80` (a uniform range), `50` (fixed) or `0` (none), in milliseconds."""
    try:
        return parse_range_ms(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_assignments(values: list[str], option: str) -> dict[str, Shape]:
    """`NAME=SPEC` options, e.g. `--limit "wikipedia=50 per 1s"`."""
    shapes: dict[str, Shape] = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected ENDPOINT=LIMIT, got {value!r}", param_hint=option)
        try:
            shapes[name.strip()] = parse_shape(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from None
    return shapes


async def serve(config: MockApiConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with MockApiServer(config, host, port) as server:
        for name in config.endpoints:
            requests = config.limits.get(name, UNLIMITED).spec()
            tokens = config.token_limits.get(name, UNLIMITED)
            shown = requests + ("" if tokens == UNLIMITED else f"; tokens {tokens.spec()}")
            path = name if name in BUILTIN else f"api/{name}"
            print(f"  {name}: {server.url}/{path}  ({shown})", file=sys.stderr)
        jitter = config.arrival_jitter_ms
        print(
            f"  stats: {server.url}/stats  latency {config.latency_ms[0]:g}-{config.latency_ms[1]:g} ms"
            f"  arrival jitter {jitter[0]:g}-{jitter[1]:g} ms",
            file=sys.stderr,
        )
        # MockApiProcess waits for exactly this line; keep stdout otherwise silent.
        print(f"{READY_PREFIX}{server.url}", flush=True)
        await stop.wait()


def mockapi(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on; 0 picks a free one."),
    config: Annotated[
        pathlib.Path | None,
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="TOML file of per-endpoint limits (docs/mockapi.md).",
        ),
    ] = None,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            help="ENDPOINT=LIMIT, the requests limit: '50 per 1s' (sliding window), '500 per 1m fixed "
            "[offset 0.3s]' (fixed window), '50/s burst 10' (GCRA) or 'unlimited'. Repeatable; an "
            "unknown ENDPOINT is served at /api/ENDPOINT.",
        ),
    ] = None,
    token_limit: Annotated[
        list[str] | None,
        typer.Option(
            "--token-limit", help="ENDPOINT=LIMIT, the tokens limit beside the requests one. Repeatable."
        ),
    ] = None,
    wikipedia_rate: float | None = typer.Option(None, min=0, help="Wikipedia GCRA requests/s; 0: unlimited."),
    wikipedia_burst: int | None = typer.Option(None, min=1, help="Wikipedia GCRA burst (default: rate/5)."),
    arxiv_rate: float | None = typer.Option(None, min=0, help="ArXiv GCRA requests/s; 0: unlimited."),
    arxiv_burst: int | None = typer.Option(None, min=1, help="ArXiv GCRA burst (default: rate/5)."),
    latency_ms: str | None = typer.Option(
        None, help="Latency of each answer: MIN-MAX, a fixed MS, or 0 [20-80]."
    ),
    arrival_jitter_ms: str | None = typer.Option(
        None, help="Delay before each request is counted, as a network adds: MIN-MAX ms [0]."
    ),
    seed: int | None = typer.Option(None, help="Seed of the latency draws, for repeatable runs."),
) -> None:
    """Serve Wikipedia-, arXiv- and LLM-shaped APIs with latency and per-endpoint rate limits.

    Endpoints: GET /wikipedia/w/api.php, GET /arxiv/api/query, POST /llm/v1/chat/completions,
    GET|POST /api/NAME, POST /spend/NAME, GET /stats, POST /stats/reset.
    Over a limit an endpoint answers 429 with Retry-After; every answer carries rate-limit headers.
    Later settings win: defaults, then --config, then the flags.
    """
    try:
        settings = load_file(config) if config else MockApiConfig()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None
    limits, token_limits = dict(settings.limits), dict(settings.token_limits)
    for name, rate, burst in ((WIKIPEDIA, wikipedia_rate, wikipedia_burst), (ARXIV, arxiv_rate, arxiv_burst)):
        if rate is not None:
            limits[name] = Limit.per_second(rate, burst)
        elif burst is not None:
            raise typer.BadParameter(f"--{name}-burst needs --{name}-rate")
    limits |= parse_assignments(limit or [], "--limit")
    token_limits |= parse_assignments(token_limit or [], "--token-limit")
    changes: dict[str, object] = {"limits": limits, "token_limits": token_limits}
    if latency_ms is not None:
        changes["latency_ms"] = parse_latency(latency_ms)
    if arrival_jitter_ms is not None:
        changes["arrival_jitter_ms"] = parse_latency(arrival_jitter_ms)
    if seed is not None:
        changes["seed"] = seed
    try:
        settings = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    asyncio.run(serve(settings, host, port))


def register(app: typer.Typer) -> None:
    app.command("mockapi")(mockapi)
