"""`stepstream demo`: the research assistant for a few hundred concurrent sessions.

Starts the mock Wikipedia/arXiv APIs and an embedded server (SQLite, the
in-process defaults), drives every session over its own bidirectional session
stream (start, answer the clarification interrupt, stream the answer), shows
live progress, prints a summary, and stops every process it started.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import pathlib
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stepstream.client import RunFailed, StepstreamClient, SuperstepStarted, TaskStarted
from stepstream.mockapi.runner import MockApiProcess, fetch_stats
from stepstream.server.process import ServerProcess

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES_CONFIG = ROOT / "examples" / "stepstream.json"
EXAMPLE_LIMITS = ROOT / "examples" / "limits.toml"
TOPICS = [
    "transformers",
    "graph theory",
    "protein folding",
    "quantum error correction",
    "reinforcement learning",
    "climate models",
    "black holes",
    "sparse attention",
]
# Event kinds that carry the graph's output (the rest report progress).
OUTPUT_KINDS = frozenset({"task_finished", "message_chunk", "interrupt_raised"})


def clarified(topic: str) -> str:
    """What the user answers when the assistant asks to sharpen `topic`."""
    return f"{topic} in recent research"


@dataclasses.dataclass
class Tally:
    sessions: int
    started: int = 0
    clarifying: int = 0
    done: int = 0
    failed: int = 0
    supersteps: int = 0
    tasks: int = 0
    chunks: int = 0
    run_latencies: list[float] = dataclasses.field(default_factory=list)
    http_429: int = 0
    answers: list[str] = dataclasses.field(default_factory=list)
    # Why runs or sessions failed: "ErrorType: message" -> how many times.
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    # Told of each run as it ends: (seconds to its end, seconds to its first output).
    on_run_end: Callable[[float, float | None], None] | None = None


async def one_session(client: StepstreamClient, index: int, tally: Tally) -> None:
    topic = TOPICS[index % len(TOPICS)]
    async with client.session_stream(graph_id="research_assistant") as stream:
        tally.started += 1
        query: Any = {"query": topic}
        clarifying = False
        while True:
            began = time.perf_counter()
            run = await (stream.resume(clarified(topic)) if clarifying else stream.start_run(query))
            interrupted, first_output = False, None
            async for event in stream.events(run.run_id):
                if first_output is None and event.kind in OUTPUT_KINDS:
                    first_output = time.perf_counter() - began
                if isinstance(event.data, SuperstepStarted):
                    tally.supersteps += 1
                elif isinstance(event.data, TaskStarted):
                    tally.tasks += 1
                elif event.kind == "message_chunk":
                    tally.chunks += 1
                elif event.kind == "interrupt_raised":
                    interrupted = True
                elif event.kind == "run_finished":
                    values = event.data.values  # type: ignore[union-attr]
                    if not interrupted and isinstance(values, dict):
                        tally.http_429 += sum((values.get("http_429") or {}).values())
                        tally.answers.append(str(values.get("answer", "")))
                elif isinstance(event.data, RunFailed):
                    tally.failed += 1
                    tally.failures[f"{event.data.error_type}: {event.data.error_message}"[:200]] += 1
                    return
            tally.run_latencies.append(time.perf_counter() - began)
            if tally.on_run_end is not None:
                tally.on_run_end(tally.run_latencies[-1], first_output)
            if not interrupted:
                tally.done += 1
                return
            clarifying = True
            tally.clarifying += 1


def progress_table(tally: Tally, elapsed: float) -> Table:
    table = Table(title=f"research assistant: {tally.sessions} sessions", expand=False)
    for column in (
        "sessions open",
        "clarified",
        "answered",
        "failed",
        "supersteps",
        "tasks",
        "tokens",
        "elapsed",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(tally.started),
        str(tally.clarifying),
        str(tally.done),
        str(tally.failed),
        str(tally.supersteps),
        str(tally.tasks),
        str(tally.chunks),
        f"{elapsed:.1f} s",
    )
    return table


def _rate_used(endpoint: dict[str, Any]) -> str:
    """The share of the API's own limit the sessions used, and what it refused."""
    limit = endpoint.get("limits", {}).get("requests", {})
    refused = f"{endpoint.get('rate_limited', 0)} refused"
    busiest, whole = limit.get("share_busiest"), limit.get("share_used")
    if whole is None:
        return f"-, {refused}"
    window = f"{busiest:.0%} in the busiest {limit['share_window_s']:g} s, " if busiest is not None else ""
    return f"{window}{whole:.0%} over {limit['busy_s']:.0f} s of {limit['spec']}, {refused}"


def summary_table(tally: Tally, elapsed: float, stats: dict[str, Any]) -> Table:
    lat = sorted(tally.run_latencies) or [0.0]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    served = stats.get("endpoints", {})
    refused = sum(e.get("rate_limited", 0) for e in served.values())
    table = Table(title="summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("sessions answered", f"{tally.done} / {tally.sessions}"),
        ("runs (start + resume)", str(len(tally.run_latencies))),
        ("runs/s", f"{len(tally.run_latencies) / elapsed:.1f}"),
        ("run latency p50", f"{statistics.median(lat) * 1000:.0f} ms"),
        ("run latency p99", f"{p99 * 1000:.0f} ms"),
        ("supersteps", str(tally.supersteps)),
        ("tasks", str(tally.tasks)),
        ("streamed tokens", str(tally.chunks)),
        ("HTTP 429s seen by the graphs", str(tally.http_429)),
        ("HTTP 429s sent by the mock APIs", str(refused)),
        ("API requests served", str(sum(e.get("served", 0) for e in served.values()))),
        *[
            (f"{name} share of its limit used", _rate_used(endpoint))
            for name, endpoint in sorted(served.items())
            if endpoint.get("rate") and endpoint.get("requests")
        ],
        ("failed runs", str(tally.failed)),
    ]
    for row in rows:
        table.add_row(*row)
    return table


async def drive(address: str, sessions: int, concurrency: int, console: Console, api_url: str) -> Tally:
    tally = Tally(sessions)
    gate = asyncio.Semaphore(concurrency)
    began = time.perf_counter()

    async def guarded(i: int) -> None:
        async with gate:
            try:
                await one_session(client, i, tally)
            except Exception as exc:
                tally.failed += 1
                tally.failures[f"{type(exc).__name__}: {exc}"[:200]] += 1

    async with StepstreamClient(address) as client:
        jobs = [asyncio.create_task(guarded(i)) for i in range(sessions)]
        with Live(progress_table(tally, 0), console=console, refresh_per_second=4) as live:
            while not all(j.done() for j in jobs):
                await asyncio.sleep(0.25)
                live.update(progress_table(tally, time.perf_counter() - began))
            live.update(progress_table(tally, time.perf_counter() - began))
    elapsed = time.perf_counter() - began
    console.print(summary_table(tally, elapsed, await fetch_stats(api_url)))
    for reason, count in tally.failures.most_common(5):
        console.print(f"[red]{count} failed: {reason}[/red]")
    if tally.answers:
        console.print(f"[dim]one answer:[/dim] {tally.answers[0][:300]}")
    return tally


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo(sessions: int, concurrency: int, http_port: int = 0, linger: float = 0.0) -> None:
    """Run the research assistant for many concurrent sessions on the embedded defaults; the
    inspector (docs/inspector.md) is served on the HTTP listener while they run."""
    console = Console()
    http_port = http_port or _free_port()
    with tempfile.TemporaryDirectory(prefix="stepstream-demo-") as workdir, MockApiProcess() as api:
        console.print(f"mock APIs on {api.url}")
        db = f"sqlite+aiosqlite:///{pathlib.Path(workdir) / 'demo.db'}"
        limits = ("--limits", str(EXAMPLE_LIMITS), "--http-port", str(http_port))
        env = {"STEPSTREAM_MOCKAPI_URL": api.url}
        server = ServerProcess(db, EXAMPLES_CONFIG, *limits, env=env, cwd=workdir)
        with server:
            console.print(f"stepstream serving on {server.address} (SQLite, limits {EXAMPLE_LIMITS.name})")
            console.print(f"inspector: http://127.0.0.1:{http_port}/ui/")
            tally = asyncio.run(drive(server.address, sessions, concurrency, console, api.url))
            if linger > 0:
                console.print(f"the inspector stays up {linger:g} s more (Ctrl-C ends it)")
                with contextlib.suppress(KeyboardInterrupt):
                    time.sleep(linger)
    if tally.failed or tally.done != sessions:
        raise typer.Exit(1)
