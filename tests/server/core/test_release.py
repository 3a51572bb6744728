"""A run's event batches are released in order, each only once what it waits for is done."""

from __future__ import annotations

import asyncio

import pytest

from stepstream.server.core.release import OrderedRelease


def _recorder(released: list[str]) -> OrderedRelease[str]:
    return OrderedRelease(lambda batch, _: released.append(batch))


async def test_batches_without_a_gate_pass_straight_through() -> None:
    released: list[str] = []
    order = _recorder(released)
    order.push("a")
    order.push("b")
    assert released == ["a", "b"]  # at once, no turn of the loop
    await order.flush()


async def test_a_gated_batch_holds_back_every_later_one_until_its_gate() -> None:
    released: list[str] = []
    order = _recorder(released)
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    order.push("started")
    order.push("step 1 finished", first)
    order.push("step 2 started")  # no gate of its own, but after a held batch
    order.push("step 2 finished", second)
    await asyncio.sleep(0.01)
    assert released == ["started"]
    first.set_result(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert released == ["started", "step 1 finished", "step 2 started"]
    second.set_result(None)
    await order.flush()
    assert released == ["started", "step 1 finished", "step 2 started", "step 2 finished"]
    order.push("ended")
    assert released[-1] == "ended"


async def test_each_batch_is_released_with_what_its_gate_resolved_to() -> None:
    released: list[tuple[str, object]] = []
    order: OrderedRelease[str] = OrderedRelease(lambda batch, result: released.append((batch, result)))
    gate = asyncio.get_running_loop().create_future()
    order.push("step 1 finished", gate)
    order.push("step 2 started")
    gate.set_result(["the save of checkpoint 1"])
    await order.flush()
    assert released == [("step 1 finished", ["the save of checkpoint 1"]), ("step 2 started", None)]


async def test_a_failed_gate_fails_the_flush_and_releases_nothing_after_it() -> None:
    released: list[str] = []
    order = _recorder(released)
    gate = asyncio.get_running_loop().create_future()
    order.push("step 1 finished", gate)
    order.push("step 2 started")
    gate.set_exception(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        await order.flush()
    assert released == []


async def test_drop_forgets_what_is_held_and_cancels_its_gates() -> None:
    released: list[str] = []
    order = _recorder(released)
    gate = asyncio.get_running_loop().create_future()
    order.push("step 1 finished", gate)
    order.push("step 2 started")
    order.drop()
    await asyncio.sleep(0.01)
    assert gate.cancelled()
    assert released == []
    await order.flush()  # nothing left to wait for
