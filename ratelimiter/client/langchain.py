"""A LangChain `BaseRateLimiter` over the shared budget: `ChatModel(rate_limiter=...)`,
and a callback that settles token-weighted limits with the usage the model reported.

LangChain's own InMemoryRateLimiter counts requests of one process; this one
takes `cost` tokens of a limiter key, and `also` tokens of other keys in the same
slot (an LLM's requests and tokens per minute, all or nothing), so every
replica's chat models share one budget:

    limiter = LangChainRateLimiter(shared, "openai-rpm", also={"openai-tpm": 1200})
    model = ChatModel(rate_limiter=limiter, callbacks=[TokenUsageReconciler(limiter, "openai-tpm")])

The reconciler settles each call's grant with the usage the model reported (the
grant is handed over through the call's context, so concurrent calls settle
their own). Sync `acquire` (from `model.invoke`) is run on the limiter's loop
when it lives in another thread, or on a private background loop otherwise.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.rate_limiters import BaseRateLimiter

from stepstream.ratelimiter.client.base import Grant, Limiter, RateLimitRefused
from stepstream.ratelimiter.types import Priority

T = TypeVar("T")

# The grants taken for the chat-model call running in this context, for the
# reconciler to settle when the call ends (set by the reconciler at the call's start).
_grants: contextvars.ContextVar[list[Grant] | None] = contextvars.ContextVar(
    "stepstream_grants", default=None
)


class _BackgroundLoop:
    """One daemon thread running an event loop, for sync callers with no loop of their own."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="stepstream-limiter", daemon=True).start()
                cls._loop = loop
            return cls._loop


def _run_sync(limiter: Limiter, coro: Coroutine[Any, Any, T]) -> T:
    home: asyncio.AbstractEventLoop | None = getattr(limiter, "home_loop", None)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("sync acquire inside an event loop would block it: use the async API (ainvoke)")
    loop = home if home is not None and home.is_running() else _BackgroundLoop.get()
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


class LangChainRateLimiter(BaseRateLimiter):
    def __init__(
        self,
        limiter: Limiter,
        key: str,
        cost: int = 1,
        timeout: float | None = None,
        priority: Priority = Priority.NORMAL,
        *,
        also: Mapping[str, int] | None = None,
    ) -> None:
        self.limiter = limiter
        self.key = key
        self.cost = cost
        self.timeout = timeout
        self.priority = priority
        self.also = dict(also or {})

    @property
    def costs(self) -> dict[str, int]:
        """Every key a call takes from, with its (estimated) cost."""
        return {self.key: self.cost, **self.also}

    async def _take(self, blocking: bool, holder: list[Grant] | None) -> bool:
        # Not blocking: a token now or nothing, as LangChain's contract asks.
        timeout = self.timeout if blocking else 0.0
        try:
            grant = await self.limiter.acquire(self.key, self.cost, timeout, self.priority, also=self.also)
        except RateLimitRefused:
            if blocking:
                raise
            return False
        if holder is not None:
            holder.append(grant)
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        return await self._take(blocking, _grants.get())

    def acquire(self, *, blocking: bool = True) -> bool:
        # The holder is read here: the coroutine runs on another thread's loop.
        return _run_sync(self.limiter, self._take(blocking, _grants.get()))


class TokenUsageReconciler(AsyncCallbackHandler):
    """Charge an LLM-tokens limit what each call really used.

    Pair it with a `LangChainRateLimiter` that takes an estimate of the tokens up
    front (its `cost`, or its `also` cost of `tokens_key`); after each call the
    difference to the model's reported total tokens is given back, or charged as
    debt, on that very grant:

        limiter = LangChainRateLimiter(shared, "openai-rpm", also={"openai-tpm": 2000})
        model = ChatModel(rate_limiter=limiter, callbacks=[TokenUsageReconciler(limiter, "openai-tpm")])
    """

    # Run in the model call's own task, so the grants it takes can be handed over.
    run_inline = True

    def __init__(self, rate_limiter: LangChainRateLimiter, tokens_key: str | None = None) -> None:
        self.rate_limiter = rate_limiter
        self.tokens_key = tokens_key or rate_limiter.key
        if self.tokens_key not in rate_limiter.costs:
            raise ValueError(f"{self.tokens_key!r} is not a key the rate limiter takes from")

    async def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, **kwargs: Any) -> None:
        if _grants.get() is None:
            _grants.set([])

    async def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any) -> None:
        if _grants.get() is None:
            _grants.set([])

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        used = _total_tokens(response)
        holder = _grants.get()
        grant = holder.pop(0) if holder else None
        if used is None:
            return
        if grant is not None:
            await grant.settle(used, self.tokens_key)
            return
        # No grant handed over (the model was called without the reconciler at its
        # start): settle against the estimate, without the grant's place in the window.
        estimate = self.rate_limiter.costs[self.tokens_key]
        if used != estimate:
            await self.rate_limiter.limiter.reconcile(self.tokens_key, estimate, used)


def _total_tokens(response: LLMResult) -> int | None:
    total = 0
    found = False
    for generations in response.generations:
        for generation in generations:
            message = generation.message if isinstance(generation, ChatGeneration) else None
            usage = message.usage_metadata if isinstance(message, AIMessage) else None
            if usage:
                total += int(usage.get("total_tokens", 0))
                found = True
    return total if found else None
