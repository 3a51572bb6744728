"""What tracing costs: the trivial 3-node graph served with tracing off, on but sampling nothing, and
sampling every run (100%), each exporting over OTLP/gRPC to a receiver in this process.

Closed loop: C clients each stream a run to its end and start the next. The
configurations take turns (off, 0 %, 100 %, off, ...) so drift on a shared
machine spreads over all of them; the figures are the medians of each one's
rounds, as ratios to "off": runs per second, and the server process's CPU
time per run (steadier than throughput when other work shares the machine).
Aim: 100 % sampling costs at most 10 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import pathlib
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection

import grpc

from stepstream.server.process import ServerProcess
from stepstream.telemetry.receiver import OtlpReceiver
from stepstream.v1 import runs_pb2, runs_pb2_grpc

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE / "graphs" / "stepstream.json"
OFF, UNSAMPLED, SAMPLED = "tracing off", "tracing on, 0% sampled", "tracing on, 100% sampled"


def environment(config: str, endpoint: str) -> dict[str, str]:
    if config == OFF:
        return {}
    sampler = "always_on" if config == SAMPLED else "always_off"
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": sampler}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Round:
    rate: float
    p50_ms: float
    cpu_ms_per_run: float


async def closed_loop(address: str, pid: int, clients: int, duration: float, warmup: float) -> Round:
    """`clients` clients streaming runs back to back; the server's CPU is read around the measured part."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(max(1, clients // 32))]
    stubs = [runs_pb2_grpc.RunServiceStub(c) for c in channels]
    request = runs_pb2.StreamRunRequest(
        run=runs_pb2.StartRunRequest(graph_id="linear", input_json='{"x": 0}')
    )
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + duration
    latencies: list[float] = []
    cpu: list[float] = []

    async def mark_cpu() -> None:
        await asyncio.sleep(warmup)
        cpu.append(cpu_seconds(pid))
        await asyncio.sleep(duration)
        cpu.append(cpu_seconds(pid))

    async def client(i: int) -> None:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            last = ""
            async for reply in stubs[i % len(stubs)].StreamRun(request):
                last = reply.events[-1].WhichOneof("kind") or ""
            if last != "run_finished":
                raise RuntimeError(f"run ended with {last}")
            if began >= measure_from:
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(mark_cpu(), *(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - measure_from
    for channel in channels:
        await channel.close()
    runs = max(len(latencies), 1)
    return Round(runs / elapsed, statistics.median(latencies) * 1000, (cpu[1] - cpu[0]) * 1000 / runs)


class Sink:
    """The OTLP receiver in a process of its own, so counting spans takes no CPU from the clients."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_serve_sink, args=(child,), daemon=True)
        self._proc.start()
        self.endpoint: str = self._conn.recv()

    @property
    def spans_received(self) -> int:
        self._conn.send("count")
        return int(self._conn.recv())

    def close(self) -> None:
        self._conn.send("stop")
        self._proc.join(10)


def _serve_sink(conn: Connection) -> None:
    with OtlpReceiver(keep_spans=False) as receiver:
        conn.send(receiver.endpoint)
        while conn.recv() == "count":
            conn.send(receiver.spans_received)


def measure(quick: bool) -> tuple[dict[tuple[str, int], list[Round]], dict[str, float]]:
    duration, warmup, rounds = (3.0, 1.0, 5) if quick else (10.0, 2.0, 7)
    concurrencies = (32,) if quick else (1, 32)
    results: dict[tuple[str, int], list[Round]] = {}
    spans_per_run: dict[str, float] = {}
    with (
        contextlib.closing(Sink()) as sink,
        tempfile.TemporaryDirectory(prefix="stepstream-bench-") as tmp,
    ):
        for clients in concurrencies:
            for round_ in range(rounds):
                for config in (OFF, UNSAMPLED, SAMPLED):
                    db = f"sqlite+aiosqlite:///{pathlib.Path(tmp) / f'{clients}-{round_}-{len(results)}.db'}"
                    server = ServerProcess(db, CONFIG, cwd=HERE, env=environment(config, sink.endpoint))
                    spans_before = sink.spans_received
                    with server:
                        assert server.pid is not None
                        measured = asyncio.run(
                            closed_loop(server.address, server.pid, clients, duration, warmup)
                        )
                    results.setdefault((config, clients), []).append(measured)
                    # Counted after the server stopped (it flushes on SIGTERM); warm-up runs included.
                    runs = measured.rate * (duration + warmup)
                    spans_per_run[config] = (sink.spans_received - spans_before) / runs if runs else 0.0
    return results, spans_per_run


def report(results: dict[tuple[str, int], list[Round]], spans_per_run: dict[str, float]) -> str:
    lines = [
        "## Tracing cost: trivial 3-node graph over gRPC, SQLite durable",
        "",
        "OTLP/gRPC export to a receiver process on the same machine; medians of each configuration's rounds.",
        "",
        "| configuration | clients | runs/s | vs off | server CPU ms/run | vs off | p50 ms | spans per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (config, clients), rounds in results.items():
        off = results[(OFF, clients)]
        rate = statistics.median(r.rate for r in rounds)
        cpu = statistics.median(r.cpu_ms_per_run for r in rounds)
        off_rate = statistics.median(r.rate for r in off)
        off_cpu = statistics.median(r.cpu_ms_per_run for r in off)
        p50 = statistics.median(r.p50_ms for r in rounds)
        spans = f"{spans_per_run[config]:.1f}" if config == SAMPLED else "-"
        lines.append(
            f"| {config} | {clients} | {rate:.0f} | {rate / off_rate:.2f}x "
            f"| {cpu:.2f} | {cpu / off_cpu:.2f}x | {p50:.2f} | {spans} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool) -> str:
    return report(*measure(quick))


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
