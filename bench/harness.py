"""Every scenario on every system, in one run on this machine: the figures behind the table.

Systems are measured one after the other, each with a fresh deployment and a
long-lived load client (bench/load.py) that runs its cells in turn. A system
that cannot run (a peer that cannot be installed, no PostgreSQL) or a scenario
it cannot do is recorded with the reason, and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from bench.holdserver import READY_PREFIX as HOLD_READY
from bench.load import RESULT_PREFIX, peak_rss_mib, reset_peak_rss
from bench.peers import envs
from bench.systems import SYSTEMS, Deployment, Resources, System
from stepstream.cli.demo import TOPICS, clarified
from stepstream.mockapi import ARXIV, WIKIPEDIA, MockApiConfig, MockApiProcess, Window

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The research APIs as (c) meets them: sliding windows, the strictest shape (no burst, any
# second), at 20 requests/s so that the sessions' demand exceeds them on a 2-core machine and
# the share used measures the limiter, not the CPU. bench/limits.toml states the same limits.
BENCH_API = MockApiConfig(limits={WIKIPEDIA: Window(20, 1.0), ARXIV: Window(20, 1.0)}, token_limits={})


@dataclasses.dataclass(frozen=True)
class Scenario:
    key: str
    letter: str
    title: str
    graph: str
    input: Any = None
    # Client concurrencies, seconds measured and least seconds of warm-up: quick, then full.
    concurrency: tuple[tuple[int, ...], tuple[int, ...]] = ((1, 256), (1, 32, 256))
    duration: tuple[float, float] = (2.0, 8.0)
    warmup: tuple[float, float] = (0.5, 2.0)
    # The window opens after this long even if some clients have not finished their warm-up
    # runs yet, and stays open at most this long waiting for as many runs as clients (at 18 s
    # Aegra's map-reduce cell opened with 28 of 256 clients warmed and read half its rate).
    max_warmup: tuple[float, float] = (25.0, 60.0)
    max_window: tuple[float, float] = (5.0, 60.0)
    # Runs each client finishes before the window opens (bench/load.py: closed_loop).
    warm_runs: int = 2


SCENARIOS = (
    Scenario("linear", "a", "trivial 3-node linear graph", "linear", {"x": 0}),
    Scenario(
        "mapreduce",
        "b",
        "map-reduce: Send 10 tasks of 50 ms I/O, then reduce",
        "mapreduce",
        {"n": 10},
        # One run's latency is its 50 ms of I/O plus overhead: the quick run measures throughput.
        concurrency=((256,), (1, 32, 256)),
    ),
    Scenario(
        "research",
        "c",
        "research assistant against sliding-window APIs (20 requests in any 1 s)",
        "research_assistant",
        # At 32 clients a FIFO limiter's queue is a second deep: a short window sees many sessions
        # end. At 256 every run waits ~10 s for its share of the APIs: the full run only.
        concurrency=((32,), (1, 32, 256)),
        # The share of the APIs' limit used is read over the window: ten of their 1-second
        # windows at least, so a second's rounding is at most a tenth of the figure.
        duration=(10.0, 30.0),
        warmup=(1.0, 5.0),
        max_warmup=(10.0, 60.0),
        max_window=(10.0, 60.0),
        # A session is throttled by the APIs' rate, not by a burst of starts: one is warm-up enough.
        warm_runs=1,
    ),
)


@dataclasses.dataclass(frozen=True)
class Soak:
    key: str = "soak"
    letter: str = "d"
    title: str = "soak: 10,000 runs in flight at once, each waiting on slow I/O"
    count: int = 10_000
    # Systems that run it in the quick mode (the full mode runs every system).
    quick_systems: tuple[str, ...] = ("stepstream-sqlite",)
    # The hold is released when every run waits on it, or when no new run arrived for this long.
    stall_seconds: float = 30.0


SOAK = Soak()


def tiny(scenarios: tuple[Scenario, ...], systems: tuple[System, ...]) -> tuple[tuple[Scenario, ...], Soak]:
    """A load small enough for a test: the harness end to end in seconds, figures meaningless."""
    small = tuple(
        dataclasses.replace(
            s,
            concurrency=((1, 4), (1, 4)),
            duration=(0.5, 0.5),
            warmup=(0.1, 0.1),
            max_warmup=(10.0, 10.0),
            max_window=(5.0, 5.0),
        )
        for s in scenarios
    )
    return small, Soak(count=50, quick_systems=tuple(s.key for s in systems), stall_seconds=5.0)


def _must_drain(cell: tuple[Scenario, int], following: tuple[Scenario, int]) -> bool:
    """Whether a cell's runs still in flight must end before the next cell starts.

    Before a cell with fewer clients they would be counted in its latencies. Before a cell of
    another scenario they are other work on the server during its warm-up and window: research
    sessions waiting on the rate-limited APIs held LangGraph's server's 10 job slots, which read
    159 runs/s on (a) after the research cell against 189 without it. Before more clients of the
    same scenario they are the same work, and the warm-up absorbs them.
    """
    (scenario, clients), (next_scenario, next_clients) = cell, following
    return next_clients < clients or next_scenario.key != scenario.key


def record(system: System, scenario: str, concurrency: int, **fields: Any) -> dict[str, Any]:
    return {
        "system": system.key,
        "label": system.label,
        "family": system.family,
        "scenario": scenario,
        "concurrency": concurrency,
        **fields,
    }


def rotations(systems: tuple[System, ...], repeats: int) -> list[tuple[int, System]]:
    """(repeat, system) in the order measured: each repeat every system once, each starting one
    system further on, so a drift of the machine's load over the run falls on every system alike
    and a ratio taken within a repeat compares systems measured minutes apart at most."""
    order: list[tuple[int, System]] = []
    for repeat in range(repeats):
        shift = repeat % len(systems) if systems else 0
        order += [(repeat, s) for s in systems[shift:] + systems[:shift]]
    return order


class Worker:
    """A load-client process: one JSON request per line in, one `bench-result` line out."""

    def __init__(self, command: list[str], env: dict[str, str], log: pathlib.Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Worker:
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                env=self.env,
                limit=1 << 24,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())
        await self.proc.stdin.drain()
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), max(1.0, deadline - time.monotonic()))
            if not line:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"load client exited: {tail[0][:200]}")
            text = line.decode(errors="replace")
            if text.startswith(RESULT_PREFIX):
                result: dict[str, Any] = json.loads(text[len(RESULT_PREFIX) :])
                if "failed" in result:
                    raise RuntimeError(result["failed"])
                return result

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"op": "stop"}\n')
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class HoldServer:
    """bench/holdserver.py as a child process."""

    def __enter__(self) -> HoldServer:
        cmd = [sys.executable, "-m", "bench.holdserver"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(HOLD_READY):
            raise RuntimeError("the hold server did not start")
        self.url = line[len(HOLD_READY) :].strip()
        return self

    async def call(self, path: str, method: str = "GET") -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as http:
            reply = await http.request(method, self.url + path)
            reply.raise_for_status()
            result: dict[str, Any] = reply.json()
            return result

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclasses.dataclass
class Bench:
    quick: bool
    systems: tuple[System, ...]
    scenarios: tuple[Scenario, ...]
    soak: Soak | None
    res: Resources
    hold: HoldServer
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # The repeat being measured; recorded with each cell when the run has more than one.
    repeat: int | None = None

    def add(self, r: dict[str, Any]) -> None:
        self.records.append(r if self.repeat is None else {**r, "repeat": self.repeat})

    @property
    def mode(self) -> int:
        return 0 if self.quick else 1

    def note(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def concurrencies(self) -> list[int]:
        return sorted({c for s in self.scenarios for c in s.concurrency[self.mode]})

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["STEPSTREAM_MOCKAPI_URL"] = self.res.mockapi_url
        return env

    @contextlib.asynccontextmanager
    async def deployed(self, system: System, concurrency: int) -> AsyncIterator[tuple[Deployment, Worker]]:
        async with system.deploy(self.res, concurrency) as deployment:
            log = self.res.fresh_dir(f"{system.key}-client") / "client.log"
            async with Worker(deployment.driver, self.env(), log) as worker:
                await worker.request({"op": "start", **deployment.start}, timeout=120)
                yield deployment, worker

    def wanted(self, group: list[int]) -> Iterator[tuple[Scenario, int]]:
        """Cells by growing concurrency: runs left in flight by one cell only ever meet the
        warm-up of a cell with as many clients or more, never a latency measured at 1 client."""
        for c in group:
            for scenario in self.scenarios:
                if c in scenario.concurrency[self.mode]:
                    yield scenario, c

    async def run_system(self, system: System) -> None:
        groups = [[c] for c in self.concurrencies()] if system.per_concurrency else [self.concurrencies()]
        for group in groups:
            cells = list(self.wanted(group))
            runnable = [(s, c) for s, c in cells if not system.cannot_run(s.key)]
            for s, c in cells:
                if (reason := system.cannot_run(s.key)) is not None:
                    self.add(record(system, s.key, c, status="cannot run", reason=reason))
            if self.quick:
                later = [(s, c) for s, c in runnable if (s.key, c) in system.full_run_only]
                for s, c in later:
                    reason = "in the full run only (make bench-full)"
                    self.add(record(system, s.key, c, status="not run", reason=reason))
                runnable = [cell for cell in runnable if cell not in later]
            if not runnable:
                continue
            try:
                async with self.deployed(system, max(group)) as (deployment, worker):
                    for i, (scenario, c) in enumerate(runnable):
                        drain = i + 1 < len(runnable) and _must_drain((scenario, c), runnable[i + 1])
                        self.add(await self.cell(system, deployment, worker, scenario, c, drain))
            except Exception as exc:
                done = {
                    (r["scenario"], r["concurrency"])
                    for r in self.records
                    if r["system"] == system.key and r.get("repeat") == self.repeat
                }
                for s, c in runnable:
                    if (s.key, c) not in done:
                        reason = f"{type(exc).__name__}: {str(exc)[:240]}"
                        self.add(record(system, s.key, c, status="not measured", reason=reason))
                self.note(f"{system.key}: {exc}")

    async def cell(
        self, system: System, deployment: Deployment, worker: Worker, scenario: Scenario, c: int, drain: bool
    ) -> dict[str, Any]:
        request = {
            "op": "cell",
            "graph": scenario.graph,
            "input": scenario.input,
            "concurrency": c,
            "duration": scenario.duration[self.mode],
            "warmup": scenario.warmup[self.mode],
            "max_warmup": scenario.max_warmup[self.mode],
            "max_window": scenario.max_window[self.mode],
            "warm_runs": scenario.warm_runs,
            # Whether runs in flight at the end must finish first (_must_drain).
            "drain": drain,
            "measure_own_rss": not deployment.serving_pids(),
            "server_pids": deployment.serving_pids(),
            # A research session is one or two runs: its throughput is counted, not derived.
            "little": scenario.key != "research",
        }
        if scenario.key == "research":
            request["topics"] = [[topic, clarified(topic)] for topic in TOPICS]
            request["mockapi_url"] = self.res.mockapi_url
        pids = deployment.serving_pids()
        for pid in pids:
            reset_peak_rss(pid)
        self.note(f"{system.key}: {scenario.key} at {c} clients")
        try:
            result = await worker.request(request, timeout=900)
        except Exception as exc:
            return record(system, scenario.key, c, status="failed", reason=f"{type(exc).__name__}: {exc}")
        if pids:
            result["peak_rss_mib"] = sum(peak_rss_mib(pid) or 0.0 for pid in pids)
        return record(system, scenario.key, c, status="ok", **result)

    async def run_soak(self, system: System, soak: Soak) -> None:
        count = soak.count
        if self.quick and system.key not in soak.quick_systems:
            reason = "in the full run only (make bench-full)"
            self.add(record(system, soak.key, count, status="not run", reason=reason))
            return
        try:
            async with self.deployed(system, count) as (deployment, worker):
                self.note(f"{system.key}: soak of {count:,} runs")
                result = await self.soak_once(deployment, worker, soak)
            self.add(record(system, soak.key, count, status="ok", **result))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:240]}"
            self.add(record(system, soak.key, count, status="failed", reason=reason))
            self.note(f"{system.key} soak: {exc}")

    async def soak_once(self, deployment: Deployment, worker: Worker, soak: Soak) -> dict[str, Any]:
        count = soak.count
        await self.hold.call("/reset", "POST")
        pids = deployment.serving_pids()
        for pid in pids:
            reset_peak_rss(pid)
        request = {"op": "soak", "count": count, "url": f"{self.hold.url}/hold"}
        request["measure_own_rss"] = not pids
        began = time.perf_counter()
        task = asyncio.create_task(worker.request(request, timeout=1800))
        peak, changed = 0, began
        try:
            while not task.done():
                stats = await self.hold.call("/stats")
                if stats["peak_open"] >= count:
                    break
                if stats["peak_open"] > peak:
                    peak, changed = stats["peak_open"], time.perf_counter()
                elif time.perf_counter() - changed > soak.stall_seconds:
                    break
                await asyncio.sleep(0.25)
            in_flight_after = time.perf_counter() - began
            stats = await self.hold.call("/stats")
        finally:
            await self.hold.call("/release", "POST")
        result = await task
        result.update(peak_in_flight=stats["peak_open"], all_in_flight_after_seconds=in_flight_after)
        if pids:
            result["peak_rss_mib"] = sum(peak_rss_mib(pid) or 0.0 for pid in pids)
        return result


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": model, "load_average": os.getloadavg()}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {name: version(name) for name in ("langgraph", "langgraph-checkpoint-sqlite", "grpcio")}
    # The peers' servers and the SDK load client, as pinned (their venvs install exactly these).
    pinned = ("langgraph-api", "aegra-api", "langgraph-sdk")
    for requirements in envs.REQUIREMENTS.values():
        for line in requirements.read_text().splitlines():
            name, _, pin = line.partition("==")
            if name in pinned and pin:
                found.setdefault(name, pin)
    with contextlib.suppress(Exception):
        found["stepstream commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    return found


async def run(
    quick: bool,
    only: list[str] | None = None,
    scenarios: list[str] | None = None,
    small: bool = False,
    repeats: int = 1,
    clients: list[int] | None = None,
) -> dict[str, Any]:
    """Measure; `only` and `scenarios` narrow by key, `small` is the test's tiny load.

    `repeats` > 1 measures every system that many times, interleaved (`rotations`), each cell
    recorded with its repeat; the report shows medians. `clients` replaces every scenario's
    client counts (e.g. (b) at 1 client too, which the quick run leaves out).
    """
    systems = tuple(s for s in SYSTEMS if not only or s.key in only)
    chosen = tuple(s for s in SCENARIOS if not scenarios or s.key in scenarios)
    soak: Soak | None = SOAK if not scenarios or "soak" in scenarios else None
    if small:
        chosen, tiny_soak = tiny(chosen, systems)
        soak = soak and tiny_soak
    if clients:
        counts = tuple(sorted(set(clients)))
        chosen = tuple(dataclasses.replace(s, concurrency=(counts, counts)) for s in chosen)
    began = time.time()
    start_load = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="stepstream-bench-") as tmp,
        MockApiProcess(BENCH_API) as api,
        HoldServer() as hold,
    ):
        res = Resources(pathlib.Path(tmp), api.url)
        bench = Bench(quick, systems, chosen, soak, res, hold)
        try:
            # The peers' environments, made on first use, before anything is timed.
            venvs = {name for s in systems for name in s.venvs}
            await asyncio.gather(*(res.venv(name) for name in sorted(venvs)), return_exceptions=True)
            for repeat, system in rotations(systems, repeats):
                bench.repeat = repeat if repeats > 1 else None
                await bench.run_system(system)
            bench.repeat = None
            if soak is not None:
                for system in systems:
                    await bench.run_soak(system, soak)
        finally:
            res.close()
    return {
        "mode": "quick" if quick else "full",
        "repeats": repeats,
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(began)),
        "seconds": round(time.time() - began),
        "machine": {**machine(), "load_average_at_start": start_load},
        "versions": versions(),
        "scenarios": [dataclasses.asdict(s) for s in chosen] + ([dataclasses.asdict(soak)] if soak else []),
        "systems": [{"key": s.key, "label": s.label, "family": s.family} for s in systems],
        "records": bench.records,
    }
