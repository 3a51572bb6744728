"""Riding out a database that restarts or fails over: retry what is safe to retry.

A statement that fails because the connection to the database was lost (server
restart, failover, "shutting down", refused connections) is tried again with a
growing pause for up to a bounded time. Only whole transactions are retried: a
group commit (rolled back by the server when the connection dropped) and reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy as sa

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATE classes of a lost or refused connection: 08 connection exception, 57P operator
# intervention (admin or crash shutdown, cannot connect now).
_TRANSIENT_SQLSTATE = ("08", "57P")


def is_transient(exc: BaseException) -> bool:
    """True when `exc` means the database could not be reached, not that a statement was wrong."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        code = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
        if code.startswith(_TRANSIENT_SQLSTATE):
            return True
        return isinstance(exc.orig, (ConnectionError, OSError))
    return isinstance(exc, (ConnectionError, OSError))


async def retrying(call: Callable[[], Awaitable[T]], seconds: float, what: str) -> T:
    """`call()`, tried again while it fails transiently, for up to `seconds`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    pause = 0.05
    warned = False
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc) or loop.time() + pause > give_up:
                raise
            if not warned:
                log.warning(
                    "database unreachable during %s (%s); retrying for up to %.0f s", what, exc, seconds
                )
                warned = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
