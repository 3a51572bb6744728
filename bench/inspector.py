"""What watching costs: the server's CPU per run with 0 and with 10 headless clients of the
inspector's live overview (GET /inspector/overview/stream, server-sent events), while runs
execute.

Closed loop as in bench/tracing.py: C gRPC clients each stream a run of the trivial 3-node graph
to its end and start the next. The watchers run in a process of their own (so reading the
streams takes no CPU from the load's clients) and count the overview frames they receive. The
two configurations take turns, each round on a fresh server, so drift on a shared machine
spreads over both; the figures are the medians of each configuration's rounds. One producer per
server process reads the database for every watcher, so ten watchers should cost about what one
does. Aim: CPU per run with 10 watchers at most 1.05x that with none.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pathlib
import statistics
import sys
import tempfile
from multiprocessing.connection import Connection

from bench.peers.servers import free_port
from bench.tracing import Round, closed_loop
from stepstream.server.process import ServerProcess

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE / "graphs" / "stepstream.json"
WATCHERS = (0, 10)
CLIENTS = 32


async def _watch(url: str, watchers: int, conn: Connection) -> None:
    import httpx

    frames = [0] * watchers

    async def one(i: int) -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as http,
            http.stream("GET", url + "/inspector/overview/stream") as response,
        ):
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("event: overview"):
                    frames[i] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(watchers)]
    loop = asyncio.get_running_loop()
    # Asked "count" by the parent: answer the frames so far; "stop": close every stream.
    while await loop.run_in_executor(None, conn.recv) == "count":
        failed = [t.exception() for t in tasks if t.done() and not t.cancelled()]
        conn.send(-1 if any(failed) else sum(frames))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _watchers_main(url: str, watchers: int, conn: Connection) -> None:
    asyncio.run(_watch(url, watchers, conn))


class Watchers:
    """`watchers` SSE clients of the overview stream in a process of their own."""

    def __init__(self, url: str, watchers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_watchers_main, args=(url, watchers, child), daemon=True)
        self._proc.start()

    def frames(self) -> int:
        self._conn.send("count")
        count = int(self._conn.recv())
        if count < 0:
            raise RuntimeError("an overview stream failed")
        return count

    def close(self) -> None:
        self._conn.send("stop")
        self._proc.join(10)


def _one_round(
    tmp: pathlib.Path, name: str, watchers: int, duration: float, warmup: float
) -> tuple[Round, float]:
    port = free_port()
    db = f"sqlite+aiosqlite:///{tmp / f'{name}.db'}"
    with ServerProcess(db, CONFIG, "--http-port", str(port), cwd=HERE) as server:
        assert server.pid is not None
        watching = Watchers(f"http://127.0.0.1:{port}", watchers) if watchers else None
        try:
            before = watching.frames() if watching else 0
            measured = asyncio.run(closed_loop(server.address, server.pid, CLIENTS, duration, warmup))
            after = watching.frames() if watching else 0
        finally:
            if watching is not None:
                watching.close()
    return measured, (after - before) / (duration + warmup)


def measure(quick: bool) -> dict[int, list[tuple[Round, float]]]:
    duration, warmup, rounds = (4.0, 1.0, 5) if quick else (10.0, 2.0, 7)
    results: dict[int, list[tuple[Round, float]]] = {w: [] for w in WATCHERS}
    with tempfile.TemporaryDirectory(prefix="stepstream-bench-") as tmp:
        for round_ in range(rounds):
            for watchers in WATCHERS:
                name = f"{round_}-{watchers}"
                results[watchers].append(_one_round(pathlib.Path(tmp), name, watchers, duration, warmup))
    return results


def report(results: dict[int, list[tuple[Round, float]]]) -> str:
    base = statistics.median(r.cpu_ms_per_run for r, _ in results[0])
    base_rate = statistics.median(r.rate for r, _ in results[0])
    lines = [
        "## Inspector: server CPU per run with live overview watchers",
        "",
        f"{CLIENTS} gRPC clients streaming the trivial 3-node graph back to back (SQLite, durable), "
        "with 0 or 10 headless SSE clients of /inspector/overview/stream in another process; "
        "interleaved rounds on fresh servers, medians of each configuration's rounds. Aim: CPU per "
        "run with 10 watchers at most 1.05x.",
        "",
        "| SSE watchers | rounds | runs/s | vs none | server CPU ms/run | vs none | frames/s received |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for watchers, rounds in results.items():
        cpu = statistics.median(r.cpu_ms_per_run for r, _ in rounds)
        rate = statistics.median(r.rate for r, _ in rounds)
        frames = statistics.median(f for _, f in rounds)
        lines.append(
            f"| {watchers} | {len(rounds)} | {rate:.0f} | {rate / base_rate:.2f}x | {cpu:.3f} "
            f"| {cpu / base:.3f}x | {frames:.1f} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool) -> str:
    return report(measure(quick))


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
