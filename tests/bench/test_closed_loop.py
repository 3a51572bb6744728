"""The closed loop's window: it opens only once the burst of first runs has been worked off."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.load import Report, RunOnce, Timing, closed_loop

BURST_SECONDS = 0.25
SLOW, FAST = 0.2, 0.005
# Between a turn of fast runs only and one that counts a slow run among a few fast ones.
TURN_MS_BOUND = 4 * FAST * 1000


def burst_then_fast() -> RunOnce:
    """A system that is slow on runs started in the first BURST_SECONDS, as a server working off
    its first burst of starts is, then fast."""
    began = time.perf_counter()

    async def run_once(index: int, report: Report) -> None:
        started = time.perf_counter()
        await asyncio.sleep(SLOW if started - began < BURST_SECONDS else FAST)
        report(Timing(time.perf_counter() - started, None))

    return run_once


@pytest.mark.parametrize("warm_runs", [1, 2])
def test_the_window_leaves_out_runs_started_in_the_burst(warm_runs: int) -> None:
    async def measure() -> dict[str, object]:
        return await closed_loop(
            burst_then_fast(),
            concurrency=4,
            duration=0.05,
            warmup=0.0,
            max_warmup=5.0,
            max_window=5.0,
            warm_runs=warm_runs,
            drain=False,
        )

    result = asyncio.run(measure())
    assert result["clients_done_at_open"] == 4
    turn_ms = result["turn_ms"]
    assert isinstance(turn_ms, float)
    if warm_runs == 1:
        # Each client's second run started inside the burst and ends in the window: counted.
        assert turn_ms > TURN_MS_BOUND
    else:
        # Two runs each outlast the burst: only fast runs are in the window.
        assert turn_ms < TURN_MS_BOUND
        assert result["warmup_seconds"] >= 2 * SLOW
