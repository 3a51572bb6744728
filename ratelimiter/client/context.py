"""The limiter of the current run, and a decorator for graph nodes.

The server installs its limiter for each run with `use_limiter`, so a node
written as

    @rate_limited("arxiv", timeout=30)
    async def search(state): ...

takes a token from whichever limiter serves the run (sidecar or in-process)
without knowing which. Several limits on one call, settled with what it used:

    @rate_limited("openai-rpm", also={"openai-tpm": 1200},
                  usage=lambda reply: {"openai-tpm": reply["usage"]["total_tokens"]})
    async def ask(prompt): ...
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import ParamSpec, TypeVar

from stepstream.ratelimiter.client.base import Limiter
from stepstream.ratelimiter.types import Priority

P = ParamSpec("P")
R = TypeVar("R")

_current: contextvars.ContextVar[Limiter | None] = contextvars.ContextVar("stepstream_limiter", default=None)


def current_limiter() -> Limiter:
    """The limiter installed for the running code; RuntimeError when none is."""
    limiter = _current.get()
    if limiter is None:
        raise RuntimeError("no rate limiter is installed: wrap the call in use_limiter(limiter)")
    return limiter


@contextlib.contextmanager
def use_limiter(limiter: Limiter) -> Iterator[Limiter]:
    """Install `limiter` for the code (and tasks it starts) inside the block."""
    token = _current.set(limiter)
    try:
        yield limiter
    finally:
        _current.reset(token)


def rate_limited(
    key: str,
    cost: int = 1,
    timeout: float | None = None,
    priority: Priority = Priority.NORMAL,
    limiter: Limiter | None = None,
    *,
    also: Mapping[str, int] | None = None,
    usage: Callable[[R], Mapping[str, int] | None] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Take `cost` tokens of `key`, and `also` tokens of other keys in the same slot, before
    each call of an async function (e.g. a graph node); `usage` reads what the call really
    used from its result ({key: tokens}), and the estimates are settled with it."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"rate_limited needs an async function, got {fn!r}")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            async with (limiter or current_limiter()).acquire(
                key, cost, timeout, priority, also=also
            ) as grant:
                result = await fn(*args, **kwargs)
                for used_key, used in ((usage(result) if usage else None) or {}).items():
                    grant.report_usage(used_key, used)
                return result

        return wrapper

    return decorate
