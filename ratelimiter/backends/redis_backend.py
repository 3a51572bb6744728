"""The Redis back end: one budget per key shared by every sidecar of every replica."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stepstream.ratelimiter import gcra, window
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
        self._reserve_many = self._redis.register_script(redis_scripts.RESERVE_MANY)
        self._adjust = self._redis.register_script(redis_scripts.ADJUST)
        self._pause = self._redis.register_script(redis_scripts.PAUSE)
        self._peek = self._redis.register_script(redis_scripts.PEEK)
        self._w_adjust = self._redis.register_script(redis_scripts.WINDOW_ADJUST)
        self._w_add = self._redis.register_script(redis_scripts.WINDOW_ADD)
        self._w_peek = self._redis.register_script(redis_scripts.WINDOW_PEEK)
        self._params: dict[LimitSpec, gcra.Gcra] = {}
        self._windows: dict[LimitSpec, window.WindowParams] = {}

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    def _gcra(self, spec: LimitSpec) -> gcra.Gcra:
        params = self._params.get(spec)
        if params is None:
            params = self._params[spec] = gcra.Gcra.from_spec(spec, _TICK)
        return params

    def _window(self, spec: LimitSpec) -> window.WindowParams:
        params = self._windows.get(spec)
        if params is None:
            params = self._windows[spec] = window.WindowParams.from_spec(spec, _TICK)
        return params

    def _keys(self, spec: LimitSpec) -> list[str]:
        # The {hash tag} keeps both keys of a limit in one Redis Cluster slot, as a
        # script touching two keys requires there. A window limit's log is a sorted
        # set under its own name, so a limit changed from GCRA to a window (or back)
        # never reads the other shape's state.
        base = f"{self._prefix}{{{spec.key}}}"
        if spec.is_window:
            base += ":log"
        return [base, f"{self._prefix}{{{spec.key}}}:paused"]

    def _key_args(self, spec: LimitSpec) -> list[int]:
        if not spec.is_window:
            return [0, self._gcra(spec).tolerance, 0, 0, 0, 0, 0]
        w = self._window(spec)
        kind = 1 if w.phase is None else 2
        return [kind, w.limit, w.period, w.margin, w.phase or 0, w.pace_limit, w.pace_span]

    def _cost(self, spec: LimitSpec, tokens: int) -> int:
        # GCRA keys take ticks of their schedule; window keys take tokens.
        return tokens if spec.is_window else self._gcra(spec).cost(tokens)

    @staticmethod
    def _result(reply: Any) -> BatchResult:
        values = [int(v) for v in reply]
        waits = values[1:]
        retry: int | None = None
        if len(waits) >= 2 and waits[-2] == -1:
            retry = waits[-1] * _TICK
            waits = waits[:-2]
        return BatchResult([w * _TICK for w in waits], retry, values[0] * _TICK, Mode.SHARED)

    async def reserve(
        self, spec: LimitSpec, requests: Sequence[tuple[int, int]], ids: Sequence[str] = ()
    ) -> BatchResult:
        if not spec.is_window:
            params = self._gcra(spec)
            args: list[Any] = [params.tolerance]
            for tokens, max_wait_ns in requests:
                args += (params.cost(tokens), max_wait_ns // _TICK)
            return self._result(await self._reserve(keys=self._keys(spec)[:1], args=args))
        args = [1, len(requests), *self._key_args(spec)]
        for i, (tokens, max_wait_ns) in enumerate(requests):
            name = ids[i] if i < len(ids) else secrets.token_hex(8)
            args += (max_wait_ns // _TICK, name, tokens)
        return self._result(await self._reserve_many(keys=self._keys(spec)[:1], args=args))

    async def reserve_set(
        self, specs: Sequence[LimitSpec], requests: Sequence[tuple[Sequence[int], int]], ids: Sequence[str]
    ) -> BatchResult:
        args: list[Any] = [len(specs), len(requests)]
        for spec in specs:
            args += self._key_args(spec)
        for i, (costs, max_wait_ns) in enumerate(requests):
            name = ids[i] if i < len(ids) else secrets.token_hex(8)
            args += (
                max_wait_ns // _TICK,
                name,
                *(self._cost(s, n) for s, n in zip(specs, costs, strict=True)),
            )
        keys = [self._keys(spec)[0] for spec in specs]
        return self._result(await self._reserve_many(keys=keys, args=args))

    async def adjust(self, spec: LimitSpec, tokens: int, grant_id: str = "", reserved: int = 0) -> Mode:
        if spec.is_window:
            span = self._window(spec).span
            await self._w_adjust(keys=self._keys(spec)[:1], args=[grant_id, reserved, tokens, span])
            return Mode.SHARED
        params = self._gcra(spec)
        delta = params.cost(abs(tokens)) * (1 if tokens > 0 else -1)
        await self._adjust(keys=self._keys(spec)[:1], args=[delta])
        return Mode.SHARED

    async def _add(self, spec: LimitSpec, offset: int, cost: int, name: str, pause: int = 0) -> None:
        args: list[int | str] = [offset, cost, name, self._window(spec).span, "1" if pause else "0", pause]
        await self._w_add(keys=self._keys(spec), args=args)

    async def pause(self, spec: LimitSpec, duration_ns: int) -> Mode:
        ticks = -(-duration_ns // _TICK)
        if spec.is_window:
            await self._add(spec, ticks, 0, "hold", pause=ticks)
            return Mode.SHARED
        params = self._gcra(spec)
        args: list[int | str] = [ticks, params.tolerance, params.cost(1), "1"]
        await self._pause(keys=self._keys(spec), args=args)
        return Mode.SHARED

    async def hold(self, spec: LimitSpec, duration_ns: int) -> None:
        ticks = -(-duration_ns // _TICK)
        if spec.is_window:
            await self._add(spec, ticks, spec.burst, "hold")
            return
        params = self._gcra(spec)
        args: list[int | str] = [ticks, params.tolerance, params.cost(1), "0"]
        await self._pause(keys=self._keys(spec), args=args)

    async def record(self, spec: LimitSpec, grants: Sequence[tuple[int, int]]) -> None:
        # Offsets from this host's now, applied to Redis's: the hosts' clocks agree
        # to well within a window.
        for offset_ns, tokens in grants:
            await self._add(spec, offset_ns // _TICK, tokens, "local")

    async def _window_state(self, spec: LimitSpec) -> tuple[int, int, list[window.Entry]]:
        reply = await self._w_peek(keys=self._keys(spec), args=[self._window(spec).span])
        values = [int(float(v)) for v in reply]
        log = [(values[i], values[i + 1], "") for i in range(2, len(values), 2)]
        return values[0], values[1], log

    async def peek(self, spec: LimitSpec) -> Peek:
        if spec.is_window:
            w = self._window(spec)
            now, paused_ms, log = await self._window_state(spec)
            ahead = bool(log) and log[-1][0] > now
            available = 0 if ahead else max(spec.burst - window.used(log, now, w), 0)
            return Peek(available, (window.free_at(log, now, w) - now) * _TICK, paused_ms * 1_000_000)
        params = self._gcra(spec)
        now, tat, paused_ms = (int(v) for v in await self._peek(keys=self._keys(spec)))
        return Peek(params.available(tat, now), max(tat - now, 0) * _TICK, paused_ms * 1_000_000)

    async def observe(self, spec: LimitSpec, remaining: int, reset_after_ns: int | None) -> tuple[int, Mode]:
        # Read, then log the difference: a grant made in between makes the difference
        # look larger than it is, so a race only ever consumes a little more.
        if not spec.is_window:
            params = self._gcra(spec)
            now, tat, _ = (int(v) for v in await self._peek(keys=self._keys(spec)))
            extra = max(params.available(tat, now) - max(remaining, 0), 0)
            if extra:
                await self.adjust(spec, extra)
            return extra, Mode.SHARED
        w = self._window(spec)
        now, _, log = await self._window_state(spec)
        ours = spec.burst - window.used(log, now, w) - sum(n for at, n, _ in log if at > now)
        extra = max(ours - max(remaining, 0), 0)
        if extra:
            offset = 0
            if reset_after_ns is not None:
                offset = min(0, max(reset_after_ns // _TICK - w.span, -w.span + 1))
            await self._add(spec, offset, extra, "seen")
        return extra, Mode.SHARED

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
