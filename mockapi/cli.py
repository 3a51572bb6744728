"""The `stepstream mockapi` verb: serve the Wikipedia/arXiv-shaped mock APIs until stopped."""

from __future__ import annotations

import asyncio
import signal
import sys

import typer

from stepstream.mockapi.app import ARXIV, WIKIPEDIA, Limit, MockApiConfig
from stepstream.mockapi.runner import READY_PREFIX, MockApiServer

DEFAULT_PORT = 8765


def parse_latency(text: str) -> tuple[float, float]:
    """`20-80` (a uniform range), `50` (fixed) or `0` (none), in milliseconds."""
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high)) if sep else (float(low), float(low))
    except ValueError:
        raise typer.BadParameter(f"expected MS or MIN-MAX in milliseconds, got {text!r}") from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise typer.BadParameter(f"need 0 <= MIN <= MAX, got {text!r}")
    return bounds


async def serve(config: MockApiConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with MockApiServer(config, host, port) as server:
        for name, limit in sorted(config.limits.items()):
            shown = f"{limit.rate:g}/s burst {limit.burst}" if limit.rate > 0 else "unlimited"
            print(f"  {name}: {server.url}/{name}  ({shown})", file=sys.stderr)
        print(
            f"  stats: {server.url}/stats  latency {config.latency_ms[0]:g}-{config.latency_ms[1]:g} ms",
            file=sys.stderr,
        )
        # MockApiProcess waits for exactly this line; keep stdout otherwise silent.
        print(f"{READY_PREFIX}{server.url}", flush=True)
        await stop.wait()


def mockapi(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on; 0 picks a free one."),
    wikipedia_rate: float = typer.Option(50.0, min=0, help="Wikipedia requests/s; 0: unlimited."),
    wikipedia_burst: int | None = typer.Option(
        None, min=1, help="Wikipedia burst (default: a fifth of the rate, at least 1)."
    ),
    arxiv_rate: float = typer.Option(50.0, min=0, help="ArXiv requests/s; 0: unlimited."),
    arxiv_burst: int | None = typer.Option(
        None, min=1, help="ArXiv burst (default: a fifth of the rate, at least 1)."
    ),
    latency_ms: str = typer.Option("20-80", help="Latency of each answer: MIN-MAX, a fixed MS, or 0."),
    seed: int | None = typer.Option(None, help="Seed of the latency draws, for repeatable runs."),
) -> None:
    """Serve Wikipedia- and arXiv-shaped search APIs with latency and per-endpoint rate limits.

    Endpoints: GET /wikipedia/w/api.php, GET /arxiv/api/query, GET /stats, POST /stats/reset.
    Over the limit an endpoint answers 429 with Retry-After.
    """
    config = MockApiConfig(
        limits={
            WIKIPEDIA: Limit.per_second(wikipedia_rate, wikipedia_burst),
            ARXIV: Limit.per_second(arxiv_rate, arxiv_burst),
        },
        latency_ms=parse_latency(latency_ms),
        seed=seed,
    )
    asyncio.run(serve(config, host, port))


def register(app: typer.Typer) -> None:
    app.command("mockapi")(mockapi)
