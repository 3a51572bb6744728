"""Notifications between replicas: PostgreSQL LISTEN on one channel, no other service.

Senders call `pg_notify` inside the transaction whose effect they announce, so a
notification arrives only once that work is committed. Listeners get a hint,
never data: they read what changed from the tables. On back ends without
notifications (SQLite) `enabled` is False and callers poll instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0


class Listener:
    def __init__(self, engine: AsyncEngine, channel: str, on_message: Callable[[str], None]) -> None:
        self.enabled = engine.dialect.name == "postgresql"
        self._url = engine.url
        self._channel = channel
        self._on_message = on_message
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        # Called after each (re)connection: what was sent while deaf must be looked up.
        self.on_reconnect: Callable[[], None] = lambda: None

    async def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="db-listener")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), 10)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        import asyncpg  # the PostgreSQL driver of the service's engine

        dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(self._channel, self._deliver)
                self._connected.set()
                self.on_reconnect()
                await lost.wait()
                log.warning("lost the notification connection; reconnecting")
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
                raise
            except (OSError, sa.exc.SQLAlchemyError, asyncpg.PostgresError) as exc:
                log.warning("cannot listen for notifications (%s); retrying", exc)
            await asyncio.sleep(RECONNECT_SECONDS)

    def _deliver(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._on_message(payload)
        except Exception:
            log.exception("notification handler failed for %r", payload)


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _conn: event.set()
