"""Closed-loop load, its figures, and the loop every load-client process runs.

Standard library only: the peers' load clients run in the peers' own
environments and import this module from the repository as it is, so every
system is measured by the same code.

A load client is a long-lived process (`python -m bench.drivers.X`) that reads
one JSON request per line on stdin and answers each with one line
`bench-result {json}` on stdout (anything else a library prints is ignored).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

RESULT_PREFIX = "bench-result "


@dataclasses.dataclass(frozen=True)
class Timing:
    """One run as its client saw it: seconds to its end, and to its first event of graph output."""

    latency: float
    first_event: float | None
    # When it ended (perf_counter): made as the run ends.
    ended: float = dataclasses.field(default_factory=time.perf_counter)


# Reports a run as it ends.
Report = Callable[[Timing], None]
# One unit of load, the `index`-th of the cell: it reports each run it makes (a session may make two).
RunOnce = Callable[[int, Report], Awaitable[None]]


def soak_result(count: int, began: float, started: float, outcomes: Sequence[Any]) -> dict[str, Any]:
    """A soak's figures from each run's outcome: True for a run that succeeded, else why not."""
    failures = [o for o in outcomes if o is not True]
    return {
        "count": count,
        "started_seconds": started,
        "total_seconds": time.perf_counter() - began,
        "succeeded": len(outcomes) - len(failures),
        "error_kinds": sorted({_why(f)[:160] for f in failures})[:3],
    }


def _why(outcome: Any) -> str:
    return f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, BaseException) else str(outcome)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def closed_loop(
    run_once: RunOnce,
    concurrency: int,
    duration: float,
    warmup: float,
    max_warmup: float = 120.0,
    max_window: float = 120.0,
    warm_runs: int = 2,
    run_timeout: float = 300.0,
    probes: Sequence[Probe] = (),
    drain: bool = True,
    little: bool = True,
) -> dict[str, Any]:
    """`concurrency` clients each run, wait for the end, and run again.

    The measured window opens once the warm-up time has passed and every
    client has finished `warm_runs` runs, or after `max_warmup` seconds
    whatever happened. Two, not one: every client's first run starts in the
    same instant, and a server with second-long runs is still working off that
    burst when the last of them ends (measured: LangGraph's server at 256
    clients, 127 runs/s in a window opened after one run against 188 in a
    window eight times longer). It lasts `duration` seconds, and longer if need
    be (up to `max_window`) until `concurrency` runs have ended in it: runs
    that end in lockstep would otherwise leave a short window empty. Runs that
    end inside it are counted. Runs still in flight when it closes get as long
    again as the warm-up took, then are cancelled (at once without `drain`:
    the last cell before the system is torn down); neither counts. A run
    longer than `run_timeout` is an error. `little`: each call of `run_once` is one run
    (not a session of several), so Little's law gives the throughput. Each probe is opened as the window
    opens and closed as it closes, with the runs it saw; what it returns goes
    into the result.
    """
    began = time.perf_counter()
    opened: list[float] = []
    closed: list[float] = []
    warmed = 0  # clients that have finished `warm_runs` runs
    runs: list[Timing] = []
    cycles: list[float] = []
    errors: collections.Counter[str] = collections.Counter()

    def in_window(t: float) -> bool:
        return bool(opened) and opened[0] <= t and (not closed or t <= closed[0])

    def report(timing: Timing) -> None:
        if in_window(timing.ended):
            runs.append(timing)

    def ready_to_open() -> bool:
        waited = time.perf_counter() - began
        return (warmed >= concurrency and waited >= warmup) or waited >= max_warmup

    async def client(k: int) -> None:
        nonlocal warmed
        index, finished = k, 0
        last: list[Timing] = []  # the last run this client reported

        def report_own(timing: Timing) -> None:
            last[:] = [timing]
            report(timing)

        called = 0.0
        while not closed:
            now = time.perf_counter()
            if last and in_window(last[0].ended):
                # A whole turn of this client, from one call to the next: the run plus whatever
                # the client and its event loop took around it.
                cycles.append(now - called)
            last.clear()
            called = now
            try:
                await asyncio.wait_for(run_once(index, report_own), run_timeout)
            except Exception as exc:
                if in_window(time.perf_counter()):
                    errors[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
            index += concurrency
            finished += 1
            if finished == warm_runs:
                warmed += 1

    clients = [asyncio.create_task(client(k)) for k in range(concurrency)]
    while not ready_to_open():
        await asyncio.sleep(0.02)
    done_at_open = warmed
    for probe in probes:
        await probe.open()
    opened.append(time.perf_counter())
    await asyncio.sleep(duration)
    while len(runs) < concurrency and time.perf_counter() - opened[0] < max_window:
        await asyncio.sleep(0.02)
    closed.append(time.perf_counter())
    seconds = closed[0] - opened[0]
    closing: dict[str, Any] = {}
    for probe in probes:
        closing.update(await probe.close(len(runs)))
    _, late = await asyncio.wait(clients, timeout=max(2.0, opened[0] - began) if drain else 0)
    for task in late:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    latencies = [t.latency for t in runs]
    firsts = [t.first_event for t in runs if t.first_event is not None]
    counted = len(runs) / seconds
    steady = done_at_open >= concurrency and bool(cycles) and little
    rate = concurrency / statistics.fmean(cycles) if steady else counted
    for side in ("server", "client"):
        cores = closing.get(f"{side}_cores")
        closing[f"{side}_cpu_ms_per_run"] = cores * 1000 / rate if cores is not None and rate else None
    return {
        "runs": len(runs),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(3)),
        "seconds": seconds,
        "warmup_seconds": opened[0] - began,
        # Below `concurrency`: the window opened before the pipeline was steady (max_warmup).
        "clients_done_at_open": done_at_open,
        "cancelled_at_end": len(late),
        # Closed loop: throughput = clients / mean turn of a client (Little's law). A count over a
        # short window is coarse when runs end in lockstep (a batch of 256 ends at once): it is
        # the cross-check, and the figure for sessions of several runs and when the window
        # opened before the pipeline was full.
        "runs_per_s": rate,
        "counted_runs_per_s": counted,
        "turn_ms": statistics.fmean(cycles) * 1000 if cycles else None,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "first_event_p50_ms": percentile(firsts, 0.50),
        "first_event_p99_ms": percentile(firsts, 0.99),
        **closing,
    }


class Probe(Protocol):
    async def open(self) -> None: ...

    async def close(self, runs: int) -> dict[str, Any]: ...


class ApiProbe:
    """Zeroes the mock APIs' counters as the window opens and reads them as it closes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened = 0.0

    def call(self, path: str, method: str) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as reply:
            result: dict[str, Any] = json.loads(reply.read())
            return result

    async def open(self) -> None:
        await asyncio.to_thread(self.call, "/stats/reset", "POST")
        self.opened = time.perf_counter()

    async def close(self, runs: int) -> dict[str, Any]:
        stats = await asyncio.to_thread(self.call, "/stats", "GET")
        return {"api": stats, "api_seconds": time.perf_counter() - self.opened}


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cores_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuProbe:
    """CPU per run over the window: the serving processes', this client's, and the machine's busy cores."""

    def __init__(self, server_pids: Sequence[int]) -> None:
        self.pids = list(server_pids)
        self.marks: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def read(self) -> tuple[float, float, float, float]:
        servers = sum(cpu_seconds(pid) for pid in self.pids)
        return servers, time.process_time(), busy_cores_seconds(), time.perf_counter()

    async def open(self) -> None:
        self.marks = self.read()

    async def close(self, runs: int) -> dict[str, Any]:
        now = self.read()
        servers, client, machine, seconds = (b - a for a, b in zip(self.marks, now, strict=True))
        return {
            # Cores busy over the window; per run once the window's throughput is known.
            "server_cores": servers / seconds if self.pids else None,
            "client_cores": client / seconds,
            "machine_busy_cores": machine / seconds,
            # Everything else busy meanwhile: PostgreSQL, the mock APIs, and whatever else runs here.
            "other_cores": (machine - servers - client) / seconds,
        }


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Restart the kernel's peak-RSS mark (VmHWM) of a process; False where the kernel refuses."""
    try:
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib(pid: int | str = "self") -> float | None:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Driver(Protocol):
    """What a load client knows: how to run each scenario against its system."""

    async def start(self, request: dict[str, Any]) -> None: ...

    def runner(self, request: dict[str, Any]) -> RunOnce: ...

    async def soak(self, request: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve_requests(driver: Driver) -> None:
    """The load client's main loop: one request per stdin line, one answer each."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        try:
            op = request["op"]
            if op == "start":
                await driver.start(request)
                answer({"ok": True})
            elif op == "cell":
                own = request.get("measure_own_rss", False)
                if own:
                    reset_peak_rss()
                probes: list[Probe] = [CpuProbe(request.get("server_pids", []))]
                if request.get("mockapi_url"):
                    probes.append(ApiProbe(request["mockapi_url"]))
                result = await closed_loop(
                    driver.runner(request),
                    request["concurrency"],
                    request["duration"],
                    request["warmup"],
                    max_warmup=request.get("max_warmup", 120.0),
                    max_window=request.get("max_window", 120.0),
                    warm_runs=request.get("warm_runs", 2),
                    drain=request.get("drain", True),
                    little=request.get("little", True),
                    probes=probes,
                )
                if own:
                    result["peak_rss_mib"] = peak_rss_mib()
                answer(result)
            elif op == "soak":
                if request.get("measure_own_rss", False):
                    reset_peak_rss()
                result = await driver.soak(request)
                if request.get("measure_own_rss", False):
                    result["peak_rss_mib"] = peak_rss_mib()
                answer(result)
            elif op == "stop":
                break
            else:
                answer({"failed": f"unknown op {op!r}"})
        except Exception as exc:
            answer({"failed": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]})
    await driver.close()


def main(driver: Driver) -> None:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.run(serve_requests(driver))
    except ImportError:
        asyncio.run(serve_requests(driver))
