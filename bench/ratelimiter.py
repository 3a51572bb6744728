"""Rate-limiter benchmark: grants/s and acquire latency of the sidecar (memory and Redis
back ends, single acquire and leases) beside in-process aiolimiter, the in-process
stepstream limiter and a direct call of the Redis script, all measured in one run.

Everything shares this machine's cores: the bench client, the sidecar and Redis
compete for them, so sidecar figures are lower bounds of a sidecar on its own core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from aiolimiter import AsyncLimiter

from stepstream.ratelimiter.backends.redis_backend import RedisBackend
from stepstream.ratelimiter.client import LocalLimiter, RemoteLimiter
from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.types import Priority

ROOT = pathlib.Path(__file__).resolve().parent.parent
# A limit that never binds: these rows measure the limiter's own cost.
OPEN = "1000000/s burst 1000000"
LEASE = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port (its URL), or None if none is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([*args, "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_port(port, proc)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(proc)


async def _serve_floor(port: int) -> None:
    """The same Acquire RPC answered by a servicer that decides nothing: gRPC's own cost."""
    import grpc

    from stepstream.v1 import ratelimit_pb2, ratelimit_pb2_grpc

    class Floor(ratelimit_pb2_grpc.RateLimiterServiceServicer):  # type: ignore[misc]
        async def Acquire(self, request: object, context: object) -> ratelimit_pb2.AcquireResponse:
            return ratelimit_pb2.AcquireResponse(outcome=ratelimit_pb2.ACQUIRE_OUTCOME_GRANTED)

        async def AcquireStream(
            self, requests: AsyncIterator[ratelimit_pb2.AcquireStreamRequest], context: object
        ) -> AsyncIterator[ratelimit_pb2.AcquireStreamResponse]:
            granted = ratelimit_pb2.AcquireResponse(outcome=ratelimit_pb2.ACQUIRE_OUTCOME_GRANTED)
            async for request in requests:
                yield ratelimit_pb2.AcquireStreamResponse(id=request.id, acquire=granted)

    server = grpc.aio.server()
    ratelimit_pb2_grpc.add_RateLimiterServiceServicer_to_server(Floor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


@contextlib.contextmanager
def _floor() -> Iterator[str]:
    port = _free_port()
    args = [sys.executable, "-m", "bench.ratelimiter", "floor", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        _wait_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextlib.contextmanager
def _sidecar(redis_url: str | None) -> Iterator[str]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "bench.toml"
        lines = [f'redis_url = "{redis_url}"'] if redis_url else []
        # The store timeout is generous: client, sidecar and Redis share the cores.
        lines += ["store_timeout_ms = 1000", "[limits]", f'open = "{OPEN}"', 'exact = "100/s burst 10"']
        config.write_text("\n".join(lines) + "\n")
        args = [sys.executable, "-m", "stepstream.ratelimiter", "--config", str(config), "--port", str(port)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            _wait_port(port, proc)
            yield f"127.0.0.1:{port}"
        finally:
            _stop(proc)


async def _measure(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float, rounds: int = 3
) -> tuple[float, list[float]]:
    """Calls per second and per-call latencies (s) with `concurrency` callers in a loop:
    the best of `rounds` rounds, since other work on a shared machine only slows a round."""
    for _ in range(20):  # warm up connections and caches
        await call()
    best: tuple[float, list[float]] = (0.0, [])
    for _ in range(rounds):
        latencies: list[float] = []
        end = time.perf_counter() + seconds / rounds

        async def worker(latencies: list[float] = latencies, end: float = end) -> None:
            clock = time.perf_counter
            while True:
                start = clock()
                if start >= end:
                    return
                await call()
                latencies.append(clock() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = len(latencies) / (time.perf_counter() - began)
        if rate > best[0]:
            best = (rate, latencies)
    return best


def _row(name: str, c: int, rate: float, lat: list[float], rpcs: str = "") -> str:
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return (
        f"| {name} | {c} | {rate:,.0f} | {rpcs or f'{rate:,.0f}'} | {q[49] * 1e3:.3f} | {q[98] * 1e3:.3f} |"
    )


async def _exactness(target: str, seconds: float) -> tuple[int, float]:
    """Grants of a 100/s burst 10 key through the sidecar with 64 callers, and the ideal."""
    limiter = RemoteLimiter(target)
    times: list[float] = []
    end = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            grant = await limiter.acquire("exact", 1, 30)
            times.append(grant.granted_at)

    await asyncio.gather(*(worker() for _ in range(64)))
    await limiter.close()
    times.sort()
    in_window = sum(1 for t in times if t < times[0] + seconds)
    return in_window, 100 * seconds + 10


async def _bench(quick: bool) -> list[str]:
    seconds = 1.5 if quick else 5.0
    levels = (1, 64)
    rows: list[str] = []
    notes: list[str] = []

    aio = AsyncLimiter(1_000_000, 1)

    async def aio_call() -> None:
        async with aio:
            pass

    local = LocalLimiter.from_limits({"open": OPEN})

    async def local_call() -> None:
        await local.acquire("open", 1, 1.0)

    for c in levels:
        rows.append(_row("aiolimiter, in-process (baseline)", c, *await _measure(aio_call, c, seconds)))
    for c in levels:
        rows.append(_row("stepstream LocalLimiter, in-process", c, *await _measure(local_call, c, seconds)))
    await local.close()

    with _floor() as target:
        for label, transport in (("Acquire, unary", "unary"), ("AcquireStream", "stream")):
            floor = RemoteLimiter(target, transport=transport)

            async def floor_call(floor: RemoteLimiter = floor) -> None:
                await floor.decide("open", 1, 1.0, Priority.NORMAL)

            for c in levels:
                measured = await _measure(floor_call, c, seconds)
                rows.append(_row(f"gRPC floor, {label}: servicer decides nothing (baseline)", c, *measured))
            await floor.close()

    with redis_server() as redis_url:
        if redis_url is None:
            notes.append("redis-server is not installed: the Redis rows are missing.")
        else:
            backend = RedisBackend(redis_url, timeout_s=1.0)
            spec = LimitSpec("open", 1_000_000, 1.0, 1_000_000)

            async def script_call() -> None:
                await backend.reserve(spec, [(1, 0)])

            for c in levels:
                rows.append(
                    _row(
                        "Redis GCRA script, direct EVALSHA (baseline)",
                        c,
                        *await _measure(script_call, c, seconds),
                    )
                )
            await backend.close()

        for name, url in (("memory", None), ("Redis", redis_url)):
            if name == "Redis" and url is None:
                continue
            with _sidecar(url) as target:
                unary = RemoteLimiter(target, transport="unary")
                stream = RemoteLimiter(target, transport="stream")
                leased = RemoteLimiter(target, leases={"open": LEASE})
                for label, limiter in (("Acquire, unary", unary), ("AcquireStream", stream)):

                    async def one(limiter: RemoteLimiter = limiter) -> None:
                        await limiter.decide("open", 1, 1.0, Priority.NORMAL)

                    for c in levels:
                        measured = await _measure(one, c, seconds)
                        rows.append(_row(f"sidecar ({name}), {label}", c, *measured))

                async def lease_call(leased: RemoteLimiter = leased) -> None:
                    await leased.decide("open", 1, 1.0, Priority.NORMAL)

                rate, lat = await _measure(lease_call, 64, seconds)
                rpcs = f"{rate / LEASE:,.0f}"
                rows.append(_row(f"sidecar ({name}), leases of {LEASE}", 64, rate, lat, rpcs))
                granted, ideal = await _exactness(target, 3.0 if quick else 10.0)
                notes.append(
                    f"Exactness, sidecar ({name}): 64 callers on a 100/s burst 10 key granted {granted} "
                    f"in the window where rate x window + burst allows {ideal:.0f}."
                )
                for limiter in (unary, stream, leased):
                    await limiter.close()
    return [*rows, "", *notes]


def run(quick: bool) -> str:
    """The markdown section of the report."""
    loop_runner: Callable[[Awaitable[list[str]]], list[str]]
    try:
        import uvloop

        loop_runner = uvloop.run  # type: ignore[assignment]
    except ImportError:
        loop_runner = asyncio.run  # type: ignore[assignment]
    lines = loop_runner(_bench(quick))
    header = [
        "## Rate limiter",
        "",
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the start) shared by the bench "
        "client, the sidecar and Redis; "
        "latency is per call as the caller sees it (acquire = one decision, no wait: the limit never binds); "
        "each row is the best of 3 rounds.",
        "",
        "| limiter | callers | tokens granted/s | decisions (calls) /s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(header + lines) + "\n"


if __name__ == "__main__":
    # `python -m bench.ratelimiter floor PORT`: the gRPC floor server of the benchmark.
    if len(sys.argv) == 3 and sys.argv[1] == "floor":
        import uvloop

        uvloop.run(_serve_floor(int(sys.argv[2])))
