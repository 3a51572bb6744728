"""The Redis back end: one budget per key shared by every sidecar of every replica."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stepstream.ratelimiter import gcra
from stepstream.ratelimiter.backends import redis_scripts
from stepstream.ratelimiter.backends.base import BatchResult, Peek
from stepstream.ratelimiter.config import LimitSpec
from stepstream.ratelimiter.types import Mode

_TICK = gcra.NS_PER_TICK_REDIS


class RedisBackend:
    """Each call is one EVALSHA (EVAL again after a restarted Redis forgot the script)."""

    def __init__(self, url: str, key_prefix: str = "stepstream:rl:", timeout_s: float = 0.05) -> None:
        # No retries and short socket timeouts: a dead Redis must fail fast so the
        # failover wrapper can answer from the local budget instead of stalling.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            max_connections=256,
        )
        self._prefix = key_prefix
        self._reserve = self._redis.register_script(redis_scripts.RESERVE)
        self._adjust = self._redis.register_script(redis_scripts.ADJUST)
        self._pause = self._redis.register_script(redis_scripts.PAUSE)
        self._peek = self._redis.register_script(redis_scripts.PEEK)
        self._params: dict[LimitSpec, gcra.Gcra] = {}

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    def _gcra(self, spec: LimitSpec) -> gcra.Gcra:
        params = self._params.get(spec)
        if params is None:
            params = self._params[spec] = gcra.Gcra.from_spec(spec, _TICK)
        return params

    def _keys(self, spec: LimitSpec) -> list[str]:
        # The {hash tag} keeps both keys of a limit in one Redis Cluster slot, as a
        # script touching two keys requires there.
        return [f"{self._prefix}{{{spec.key}}}", f"{self._prefix}{{{spec.key}}}:paused"]

    async def reserve(self, spec: LimitSpec, requests: Sequence[tuple[int, int]]) -> BatchResult:
        params = self._gcra(spec)
        args: list[Any] = [params.tolerance]
        for tokens, max_wait_ns in requests:
            args += (params.cost(tokens), max_wait_ns // _TICK)
        reply = await self._reserve(keys=self._keys(spec)[:1], args=args)
        values = [int(v) for v in reply]
        waits = values[1:]
        retry: int | None = None
        if len(waits) >= 2 and waits[-2] == -1:
            retry = waits[-1] * _TICK
            waits = waits[:-2]
        return BatchResult([w * _TICK for w in waits], retry, values[0] * _TICK, Mode.SHARED)

    async def adjust(self, spec: LimitSpec, tokens: int) -> Mode:
        params = self._gcra(spec)
        delta = params.cost(abs(tokens)) * (1 if tokens > 0 else -1)
        await self._adjust(keys=self._keys(spec)[:1], args=[delta])
        return Mode.SHARED

    async def pause(self, spec: LimitSpec, duration_ns: int) -> Mode:
        params = self._gcra(spec)
        args: list[int | str] = [-(-duration_ns // _TICK), params.tolerance, params.cost(1), "1"]
        await self._pause(keys=self._keys(spec), args=args)
        return Mode.SHARED

    async def hold(self, spec: LimitSpec, duration_ns: int) -> None:
        params = self._gcra(spec)
        args: list[int | str] = [-(-duration_ns // _TICK), params.tolerance, params.cost(1), "0"]
        await self._pause(keys=self._keys(spec), args=args)

    async def peek(self, spec: LimitSpec) -> Peek:
        params = self._gcra(spec)
        now, tat, paused_ms = (int(v) for v in await self._peek(keys=self._keys(spec)))
        return Peek(params.available(tat, now), max(tat - now, 0) * _TICK, paused_ms * 1_000_000)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
