"""A LangChain `BaseRateLimiter` over the shared budget: `ChatModel(rate_limiter=...)`,
and a callback that settles token-weighted limits with the usage the model reported.

LangChain's own InMemoryRateLimiter counts requests of one process; this one
takes `cost` tokens of a limiter key, so every replica's chat models share one
budget. Sync `acquire` (from `model.invoke`) is run on the limiter's loop when
it lives in another thread, or on a private background loop otherwise.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.rate_limiters import BaseRateLimiter

from stepstream.ratelimiter.client.base import Limiter, RateLimitRefused
from stepstream.ratelimiter.types import Priority

T = TypeVar("T")


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
    ) -> None:
        self.limiter = limiter
        self.key = key
        self.cost = cost
        self.timeout = timeout
        self.priority = priority

    async def aacquire(self, *, blocking: bool = True) -> bool:
        # Not blocking: a token now or nothing, as LangChain's contract asks.
        timeout = self.timeout if blocking else 0.0
        try:
            await self.limiter.acquire(self.key, self.cost, timeout, self.priority)
        except RateLimitRefused:
            if blocking:
                raise
            return False
        return True

    def acquire(self, *, blocking: bool = True) -> bool:
        return _run_sync(self.limiter, self.aacquire(blocking=blocking))


class TokenUsageReconciler(AsyncCallbackHandler):
    """Charge an LLM-tokens limit what each call really used.

    Pair it with a `LangChainRateLimiter` whose `cost` is the estimate taken up
    front; after each call the difference to the model's reported total tokens is
    given back, or charged as debt:

        limiter = LangChainRateLimiter(shared, "llm-tokens", cost=2000)
        model = ChatModel(rate_limiter=limiter, callbacks=[TokenUsageReconciler(limiter)])
    """

    def __init__(self, rate_limiter: LangChainRateLimiter) -> None:
        self.rate_limiter = rate_limiter

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        used = _total_tokens(response)
        if used is not None and used != self.rate_limiter.cost:
            await self.rate_limiter.limiter.reconcile(self.rate_limiter.key, self.rate_limiter.cost, used)


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
