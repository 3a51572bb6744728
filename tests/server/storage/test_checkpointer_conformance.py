"""LangGraph's own checkpointer conformance suite, base and extended capabilities."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, EXTENDED_CAPABILITIES

from stepstream.server.storage.checkpointer import SQLAlchemyCheckpointSaver

pytestmark = pytest.mark.process

SaverFactory = Callable[[], AbstractAsyncContextManager[SQLAlchemyCheckpointSaver]]
CAPABILITIES = sorted(cap.value for cap in ALL_CAPABILITIES)


@pytest.mark.parametrize("capability", CAPABILITIES)
async def test_conformance(make_saver: SaverFactory, capability: str) -> None:
    @checkpointer_test(name="SQLAlchemyCheckpointSaver")
    async def factory() -> AsyncIterator[SQLAlchemyCheckpointSaver]:
        async with make_saver() as saver:
            yield saver

    report = await validate(factory, capabilities={capability})
    result = report.results[capability]
    assert result.detected, f"{capability} is not implemented"
    assert result.passed is True, result.failures
    assert result.tests_passed > 0 and result.tests_failed == 0


def test_extended_capabilities_are_covered() -> None:
    assert {cap.value for cap in EXTENDED_CAPABILITIES} <= set(CAPABILITIES)
    assert {"delete_for_runs", "copy_thread", "prune"} <= set(CAPABILITIES)
