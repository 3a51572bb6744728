"""The limiter's logic, knowing nothing of gRPC: acquire, leases, reconcile, 429 pauses.

Acquire takes the fast path when nobody waits on the key: one back-end call
that grants now or reserves a slot at most `reserve_ahead` away. Otherwise the
caller joins the key's line (`queue.FairQueue`) and one dispatcher task per
key hands out slots in line order as they come within reach: it asks the back
end for a batch of reservations (one Redis round trip for many callers), sleeps
until the next slot is close when none fit, and never polls on behalf of a
caller. A caller whose deadline cannot be met is refused at once with the
earliest time a retry could pass, or at its deadline if other sidecars took the
slots it was counting on.

An acquire over several keys (an LLM call's requests and tokens) is one store
call that finds the earliest slot every key can grant and takes from all of
them at once, or from none: no key is held while another is awaited, so there
is nothing to deadlock on, and each key's grants stay in time order across every
sidecar, so nobody is overtaken for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import time
from collections.abc import Mapping, Sequence

from stepstream.ratelimiter.backends.base import Backend, BatchResult
from stepstream.ratelimiter.config import LimiterSettings, LimitSpec
from stepstream.ratelimiter.counters import GrantCounter
from stepstream.ratelimiter.errors import InvalidRequest, StoreUnavailable, TooManyWaiters, UnknownKey
from stepstream.ratelimiter.queue import FairQueue, Waiter
from stepstream.ratelimiter.types import Decision, Lease, LimitState, Mode, Priority

log = logging.getLogger(__name__)
NS = 1_000_000_000


class _KeyState:
    """The waiting line of one key, or of one set of keys always taken together."""

    __slots__ = ("busy", "dispatcher", "interval_ns", "next_slot_ns", "queue", "spec", "specs")

    def __init__(self, *specs: LimitSpec) -> None:
        self.specs = specs
        spec = self.spec = specs[0]
        self.queue = FairQueue()
        self.dispatcher: asyncio.Task[None] | None = None
        # A fast-path store call is out for this key.
        self.busy = False
        # Monotonic time the next slot is expected, for refusing hopeless deadlines at once.
        self.next_slot_ns = 0
        self.interval_ns = spec.period_s * NS / spec.rate

    def min_wait_ns(self, tokens_ahead: int) -> float:
        """A lower bound of how long `tokens_ahead` queued tokens take to be granted."""
        if self.spec.is_window:
            # A whole window's worth may go at once: only full windows ahead must pass.
            return (tokens_ahead // self.spec.burst) * self.spec.period_s * NS
        return tokens_ahead * self.interval_ns


class LimiterCore:
    def __init__(self, settings: LimiterSettings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self._keys = {key: _KeyState(spec) for key, spec in settings.limits.items()}
        # Lines of sets of keys taken together (e.g. an LLM's requests and tokens).
        self._sets: dict[tuple[str, ...], _KeyState] = {}
        self._ahead_ns = int(settings.reserve_ahead_ms * 1_000_000)
        self._leases: dict[str, tuple[LimitSpec, int, int]] = {}
        self._lease_expiry: list[tuple[int, str]] = []
        # Grants per key (DescribeLimit's rates).
        self._counters = {key: GrantCounter() for key in settings.limits}

    @property
    def limits(self) -> Mapping[str, LimitSpec]:
        return self.settings.limits

    def _state(self, key: str) -> _KeyState:
        if not key:
            raise InvalidRequest("key", "must not be empty")
        state = self._keys.get(key)
        if state is None:
            raise UnknownKey(key)
        return state

    # ---- acquire ---------------------------------------------------------------

    def _check(self, key: str, tokens: int, max_wait_s: float) -> tuple[_KeyState, int]:
        state = self._state(key)
        if tokens < 1:
            raise InvalidRequest("cost", f"must be at least 1, got {tokens}")
        if tokens > state.spec.burst:
            raise InvalidRequest("cost", f"{tokens} is above the burst of {key!r} ({state.spec.burst})")
        if max_wait_s < 0:
            raise InvalidRequest("max_wait", "must not be negative")
        return state, int(max_wait_s * NS)

    def _first_try(
        self, state: _KeyState, result: BatchResult, max_wait_ns: int, grant_id: str = ""
    ) -> Decision | None:
        """The decision of a fast-path reservation, or None when the caller must queue."""
        if result.waits_ns:
            return self._granted(state, result, result.waits_ns[0], grant_id)
        retry = result.retry_after_ns or 0
        state.next_slot_ns = max(state.next_slot_ns, time.monotonic_ns() + retry)
        if retry > max_wait_ns:
            return Decision(False, retry_after_s=retry / NS, mode=result.mode)
        return None

    def try_now(
        self, key: str, tokens: int = 1, max_wait_s: float = 0.0, priority: Priority = Priority.NORMAL
    ) -> Decision | None:
        """The decision without suspending, when the back end decides in-process and
        nobody waits on the key; None when `acquire` must be awaited instead. It saves
        a task per grant on the streaming path of the memory back end."""
        reserve_now = getattr(self.backend, "reserve_now", None)
        if reserve_now is None:
            return None
        state, max_wait_ns = self._check(key, tokens, max_wait_s)
        if state.queue or state.busy:
            return None
        grant_id = _grant_id()
        result = reserve_now(state.spec, [(tokens, min(max_wait_ns, self._ahead_ns))], (grant_id,))
        return self._first_try(state, result, max_wait_ns, grant_id)

    async def acquire(
        self, key: str, tokens: int = 1, max_wait_s: float = 0.0, priority: Priority = Priority.NORMAL
    ) -> Decision:
        """Grant `tokens` now or after a reserved wait within `max_wait_s`, or refuse."""
        state, max_wait_ns = self._check(key, tokens, max_wait_s)
        now = time.monotonic_ns()
        if not state.queue and not state.busy:
            # While this call is out at the store, later callers join the line, and the
            # dispatcher reserves for all of them in one store call (one Redis round
            # trip for a whole batch instead of one per caller).
            state.busy = True
            grant_id = _grant_id()
            try:
                result = await self.backend.reserve(
                    state.spec, [(tokens, min(max_wait_ns, self._ahead_ns))], (grant_id,)
                )
            finally:
                state.busy = False
            decision = self._first_try(state, result, max_wait_ns, grant_id)
            if decision is not None:
                return decision
        return await self._wait_in_line(state, tokens, priority, now + max_wait_ns)

    def _enqueue(
        self, state: _KeyState, tokens: int, priority: Priority, deadline_ns: int
    ) -> Decision | Waiter:
        """Join the key's line; a refusal when the deadline cannot be met from there."""
        if len(state.queue) >= self.settings.max_waiters_per_key:
            raise TooManyWaiters(state.spec.key, self._estimate_ns(state, priority) / NS)
        estimate = self._estimate_ns(state, priority)
        now = time.monotonic_ns()
        if now + estimate > deadline_ns:
            # Everyone ahead must be served first: this deadline cannot be met.
            return Decision(False, retry_after_s=estimate / NS, mode=Mode.SHARED)
        loop = asyncio.get_running_loop()
        waiter = Waiter(tokens, priority, deadline_ns, loop.create_future())
        waiter.grant_id = _grant_id()
        waiter.timer = loop.call_at(loop.time() + (deadline_ns - now) / NS, self._expire, state, waiter)
        state.queue.push(waiter)
        if state.dispatcher is None or state.dispatcher.done():
            state.dispatcher = loop.create_task(self._dispatch(state))
        return waiter

    async def _wait_in_line(
        self, state: _KeyState, tokens: int, priority: Priority, deadline_ns: int
    ) -> Decision:
        waiter = self._enqueue(state, tokens, priority, deadline_ns)
        if isinstance(waiter, Decision):
            return waiter
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # The caller went away: leave the line, or give back a slot granted meanwhile.
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                if waiter.future.result().granted:
                    await asyncio.shield(self._give_back_all(state, waiter))
            else:
                self._leave(state, waiter)
            raise

    def submit(
        self, key: str, tokens: int = 1, max_wait_s: float = 0.0, priority: Priority = Priority.NORMAL
    ) -> Decision | asyncio.Future[Decision]:
        """`acquire` without a coroutine per caller: the decision, or a future of it.

        For the streaming path, where thousands of acquires arrive on one call: a
        future costs far less than a task. With a back end that must be awaited
        (Redis) every caller goes through the line, so one store call serves all
        the callers that arrived meanwhile. Cancelling the future leaves the line.
        """
        decision = self.try_now(key, tokens, max_wait_s, priority)
        if decision is not None:
            return decision
        state, max_wait_ns = self._check(key, tokens, max_wait_s)
        waiter = self._enqueue(state, tokens, priority, time.monotonic_ns() + max_wait_ns)
        if isinstance(waiter, Decision):
            return waiter
        waiter.future.add_done_callback(lambda f: self._leave(state, waiter) if f.cancelled() else None)
        return waiter.future

    @staticmethod
    def _leave(state: _KeyState, waiter: Waiter) -> None:
        state.queue.discard(waiter)
        if waiter.timer:
            waiter.timer.cancel()

    def _estimate_ns(self, state: _KeyState, priority: Priority) -> int:
        """A lower bound of the wait of a caller joining the line now."""
        until_slot = max(state.next_slot_ns - time.monotonic_ns(), 0)
        return int(until_slot + state.min_wait_ns(state.queue.tokens_ahead(priority)))

    def _expire(self, state: _KeyState, waiter: Waiter) -> None:
        if waiter.dead or waiter.future.done():
            return
        state.queue.discard(waiter)
        retry = self._estimate_ns(state, waiter.priority)
        waiter.future.set_result(Decision(False, retry_after_s=retry / NS, mode=Mode.SHARED))

    async def _dispatch(self, state: _KeyState) -> None:
        try:
            while state.queue:
                batch = state.queue.plan(self.settings.max_batch)
                now = time.monotonic_ns()
                requests = [(w.tokens, max(min(self._ahead_ns, w.deadline_ns - now), 0)) for w in batch]
                if len(state.specs) > 1:
                    # A set's head reserves its slot however far ahead it lies, so that
                    # lines of single keys, which keep their next slots taken, cannot push
                    # it back for ever; the rest of the set's line waits behind it.
                    requests[0] = (batch[0].tokens, max(batch[0].deadline_ns - now, 0))
                try:
                    result = await self._reserve(state, batch, requests)
                except StoreUnavailable as exc:
                    for waiter in state.queue.drain():
                        self._settle(waiter, exc)
                    return
                for waiter, wait in zip(batch, result.waits_ns, strict=False):
                    if waiter.dead:
                        # Expired or cancelled while the store decided: the slot goes back.
                        await self._give_back_all(state, waiter)
                        continue
                    state.queue.served(waiter)
                    self._settle(waiter, self._granted(state, result, wait, waiter.grant_id, queued=True))
                if result.retry_after_ns is None:
                    continue
                head = batch[len(result.waits_ns)]
                retry = result.retry_after_ns
                now = time.monotonic_ns()
                state.next_slot_ns = now + retry
                if now + retry > head.deadline_ns and not head.dead:
                    # Its slot lies past its deadline whatever happens next: refuse now.
                    state.queue.discard(head)
                    self._settle(head, Decision(False, retry_after_s=retry / NS, mode=result.mode))
                    continue
                # Sleep until the next slot is within reach (no caller polls; this
                # task wakes once per slot window, whatever the number of waiters).
                await asyncio.sleep(max(retry - self._ahead_ns, 0) / NS)
        except Exception:
            log.exception("rate-limit dispatcher for %r failed", state.spec.key)
            for waiter in state.queue.drain():
                self._settle(waiter, StoreUnavailable("the rate limiter failed; see its log"))

    def _granted(
        self, state: _KeyState, result: BatchResult, wait_ns: int, grant_id: str, queued: bool = False
    ) -> Decision:
        """The decision of a grant, counted for each key it takes from; it waited if it stood
        in the key's line or its slot lies ahead."""
        for spec in state.specs:
            self._counters[spec.key].add(queued or wait_ns > 0)
        return _granted(result, wait_ns, grant_id)

    @staticmethod
    def _settle(waiter: Waiter, outcome: Decision | BaseException) -> None:
        if waiter.timer:
            waiter.timer.cancel()
        if waiter.future.done():
            return
        if isinstance(outcome, BaseException):
            waiter.future.set_exception(outcome)
        else:
            waiter.future.set_result(outcome)

    async def _reserve(
        self, state: _KeyState, batch: Sequence[Waiter], requests: Sequence[tuple[int, int]]
    ) -> BatchResult:
        ids = [w.grant_id for w in batch]
        if len(state.specs) == 1:
            return await self.backend.reserve(state.spec, requests, ids)
        costs = [(w.costs, wait) for w, (_, wait) in zip(batch, requests, strict=True)]
        return await self.backend.reserve_set(state.specs, costs, ids)

    async def _give_back_all(self, state: _KeyState, waiter: Waiter) -> None:
        for spec, tokens in zip(state.specs, waiter.costs, strict=True):
            await self._give_back(spec, tokens, waiter.grant_id)

    async def _give_back(self, spec: LimitSpec, tokens: int, grant_id: str = "") -> None:
        with contextlib.suppress(Exception):
            await self.backend.adjust(spec, -tokens, grant_id, tokens)

    # ---- several keys at once ------------------------------------------------------

    async def acquire_many(
        self, items: Sequence[tuple[str, int]], max_wait_s: float = 0.0, priority: Priority = Priority.NORMAL
    ) -> Decision:
        """Take tokens of several keys in one slot, all or nothing (e.g. 1 request and an
        estimated 1,200 tokens), within `max_wait_s`; refuse with the earliest retry.

        The slot is reserved in the store at once, however far ahead it lies, in the
        order requests reach the store (so the priority does not reorder them)."""
        if len(items) == 1:
            key, tokens = items[0]
            return await self.acquire(key, tokens, max_wait_s, priority)
        if not items:
            raise InvalidRequest("key", "must not be empty")
        max_wait_ns = 0
        for key, tokens in items:
            _, max_wait_ns = self._check(key, tokens, max_wait_s)
        keys = tuple(key for key, _ in items)
        if len(set(keys)) != len(keys):
            raise InvalidRequest("also", "a key is named twice: add its costs into one")
        state = self._sets.get(keys)
        if state is None:
            state = self._sets[keys] = _KeyState(*(self._keys[key].spec for key in keys))
        costs = tuple(tokens for _, tokens in items)
        now = time.monotonic_ns()
        if not state.queue and not state.busy:
            # The set's line is empty: this caller heads it and reserves its slot at once.
            state.busy = True
            grant_id = _grant_id()
            try:
                result = await self.backend.reserve_set(state.specs, [(costs, max_wait_ns)], [grant_id])
            finally:
                state.busy = False
            if result.waits_ns:
                return self._granted(state, result, result.waits_ns[0], grant_id)
            retry = result.retry_after_ns or 0
            state.next_slot_ns = max(state.next_slot_ns, time.monotonic_ns() + retry)
            return Decision(False, retry_after_s=retry / NS, mode=result.mode)
        waiter = self._enqueue(state, costs[0], priority, now + max_wait_ns)
        if isinstance(waiter, Decision):
            return waiter
        waiter.costs = costs
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                if waiter.future.result().granted:
                    await asyncio.shield(self._give_back_all(state, waiter))
            else:
                self._leave(state, waiter)
            raise

    async def release_many(self, items: Sequence[tuple[str, int]], grant_id: str) -> None:
        """Give back a grant over several keys that will not be used (its caller left)."""
        for key, tokens in items:
            await self._give_back(self._state(key).spec, tokens, grant_id)

    # ---- leases ------------------------------------------------------------------

    async def acquire_lease(
        self,
        key: str,
        tokens: int,
        max_wait_s: float = 0.0,
        priority: Priority = Priority.NORMAL,
        ttl_s: float | None = None,
    ) -> Lease | Decision:
        """Tokens in one piece, spent by the caller without an RPC each; a refusal is a Decision."""
        ttl = ttl_s or self.settings.lease_ttl_s
        if ttl < 0 or ttl > self.settings.max_lease_ttl_s:
            raise InvalidRequest("ttl", f"must be between 0 and {self.settings.max_lease_ttl_s} s")
        decision = await self.acquire(key, tokens, max_wait_s, priority)
        if not decision.granted:
            return decision
        self._prune_leases()
        lease_id = secrets.token_hex(12)
        expires_in = decision.wait_s + ttl
        expires_ns = time.monotonic_ns() + int(expires_in * NS)
        self._leases[lease_id] = (self._keys[key].spec, tokens, expires_ns)
        heapq.heappush(self._lease_expiry, (expires_ns, lease_id))
        return Lease(lease_id, key, tokens, decision.wait_s, expires_in, decision.granted_at, decision.mode)

    async def release_lease(self, lease_id: str, used: int) -> int:
        """End a lease; returns the tokens given back (none once it has expired)."""
        if used < 0:
            raise InvalidRequest("used", "must not be negative")
        entry = self._leases.pop(lease_id, None)
        if entry is None:
            return 0
        spec, tokens, expires_ns = entry
        unused = tokens - min(used, tokens)
        if unused <= 0 or time.monotonic_ns() >= expires_ns:
            return 0
        await self.backend.adjust(spec, -unused)
        return unused

    def _prune_leases(self) -> None:
        now = time.monotonic_ns()
        while self._lease_expiry and self._lease_expiry[0][0] <= now:
            _, lease_id = heapq.heappop(self._lease_expiry)
            self._leases.pop(lease_id, None)

    # ---- feedback ----------------------------------------------------------------

    async def reconcile(self, key: str, reserved: int, actual: int, grant_id: str = "") -> Mode:
        """Charge what was really used: the difference goes back, or is charged as debt.

        With the grant's id a window limit settles that grant where it sits in the
        window; without, extra use is counted now and an unused rest cannot be found,
        so it is not given back (the safe side)."""
        state = self._state(key)
        if reserved < 0:
            raise InvalidRequest("reserved", "must not be negative")
        if actual < 0:
            raise InvalidRequest("actual", "must not be negative")
        if actual == reserved:
            return Mode.SHARED
        return await self.backend.adjust(state.spec, actual - reserved, grant_id, reserved)

    async def observe_remaining(self, key: str, remaining: int, reset_after_s: float | None = None) -> int:
        """The API says it has `remaining` left (until `reset_after_s`): when that is less
        than the key has, the difference is consumed in the shared budget, for every
        replica. Returns the tokens consumed (0 when the API agrees or has more)."""
        state = self._state(key)
        if remaining < 0:
            raise InvalidRequest("remaining", "must not be negative")
        if reset_after_s is not None and reset_after_s < 0:
            raise InvalidRequest("reset_after", "must not be negative")
        reset_ns = None if reset_after_s is None else int(reset_after_s * NS)
        consumed, _ = await self.backend.observe(state.spec, remaining, reset_ns)
        return consumed

    async def report_throttled(self, key: str, retry_after_s: float = 0.0) -> float:
        """A caller got HTTP 429: pause the key for everyone; returns the pause in seconds."""
        state = self._state(key)
        if retry_after_s < 0:
            raise InvalidRequest("retry_after", "must not be negative")
        pause_s = min(retry_after_s or self.settings.default_pause_s, self.settings.max_pause_s)
        await self.backend.pause(state.spec, int(pause_s * NS))
        state.next_slot_ns = max(state.next_slot_ns, time.monotonic_ns() + int(pause_s * NS))
        return pause_s

    # ---- description -------------------------------------------------------------

    async def describe(self, key: str) -> tuple[LimitSpec, LimitState]:
        state = self._state(key)
        peek = await self.backend.peek(state.spec)
        counter = self._counters[key]
        granted_per_s, waited_per_s = counter.rates()
        live = LimitState(
            peek.available,
            peek.full_in_ns / NS,
            peek.paused_for_ns / NS,
            len(state.queue),
            peek.mode,
            granted_per_s=granted_per_s,
            waited_per_s=waited_per_s,
            granted_total=counter.granted_total,
            waited_total=counter.waited_total,
        )
        return state.spec, live

    async def close(self) -> None:
        for state in [*self._keys.values(), *self._sets.values()]:
            for waiter in state.queue.drain():
                self._settle(waiter, StoreUnavailable("the rate limiter is shutting down"))
            if state.dispatcher and not state.dispatcher.done():
                state.dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.dispatcher
        await self.backend.close()


def _granted(result: BatchResult, wait_ns: int, grant_id: str = "") -> Decision:
    return Decision(True, wait_ns / NS, 0.0, (result.epoch_ns + wait_ns) / NS, result.mode, grant_id)


def _grant_id() -> str:
    return secrets.token_hex(8)
