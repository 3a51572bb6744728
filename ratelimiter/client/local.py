"""The limiter in-process: the sidecar's core and memory back end, no other process.

The single-machine default: one replica needs no sidecar, and gets the same
exact algorithm, fairness, deadlines, priorities and 429 pauses. Use it from
one event loop (its waiting lines live on the loop that first used it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from stepstream.ratelimiter.backends.base import Backend
from stepstream.ratelimiter.backends.memory import MemoryBackend
from stepstream.ratelimiter.client.base import Limiter, LimiterRequestError, LimiterUnavailable
from stepstream.ratelimiter.config import LimiterSettings, LimitSpec, settings_from_mapping
from stepstream.ratelimiter.core import LimiterCore
from stepstream.ratelimiter.errors import InvalidRequest, StoreUnavailable, TooManyWaiters, UnknownKey
from stepstream.ratelimiter.types import Decision, LimitState, Priority


class LocalLimiter(Limiter):
    def __init__(self, settings: LimiterSettings, backend: Backend | None = None) -> None:
        if backend is None:
            from stepstream.ratelimiter.server import build_backend

            backend = build_backend(settings) if settings.redis_url else MemoryBackend()
        self.core = LimiterCore(settings, backend)
        # The loop the limiter lives on; sync callers in other threads are sent there.
        self.home_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_limits(cls, limits: Mapping[str, Any], **settings: Any) -> LocalLimiter:
        """E.g. `LocalLimiter.from_limits({"arxiv": "1 per 3s", "wikipedia": "200/s burst 20"})`."""
        return cls(settings_from_mapping({**settings, "limits": dict(limits)}, "<LocalLimiter>"))

    @property
    def limits(self) -> Mapping[str, LimitSpec]:
        return self.core.limits

    def limit_of(self, key: str) -> LimitSpec | None:
        return self.core.limits.get(key)

    async def decide(self, key: str, cost: int, timeout: float, priority: Priority) -> Decision:
        return await self.decide_many([(key, cost)], timeout, priority)

    async def decide_many(
        self, items: Sequence[tuple[str, int]], timeout: float, priority: Priority
    ) -> Decision:
        if self.home_loop is None:
            self.home_loop = asyncio.get_running_loop()
        try:
            return await self.core.acquire_many(items, timeout, priority)
        except StoreUnavailable as exc:
            raise LimiterUnavailable(str(exc)) from exc
        except (InvalidRequest, UnknownKey, TooManyWaiters) as exc:
            code = {InvalidRequest: "INVALID_ARGUMENT", UnknownKey: "NOT_FOUND"}.get(
                type(exc), "RESOURCE_EXHAUSTED"
            )
            raise LimiterRequestError(code, str(exc)) from exc

    async def report_throttled(self, key: str, retry_after_s: float = 0.0) -> float:
        return await self.core.report_throttled(key, retry_after_s)

    async def reconcile(self, key: str, reserved: int, actual: int, grant_id: str = "") -> None:
        await self.core.reconcile(key, reserved, actual, grant_id)

    async def observe_remaining(self, key: str, remaining: int, reset_after_s: float | None = None) -> int:
        return await self.core.observe_remaining(key, remaining, reset_after_s)

    async def describe_limits(self) -> list[tuple[LimitSpec, LimitState]]:
        return [await self.core.describe(key) for key in self.core.limits]

    async def close(self) -> None:
        await self.core.close()
