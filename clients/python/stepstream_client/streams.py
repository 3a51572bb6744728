"""Server-streamed run events, kept alive across replica failures.

Every event has a per-run `seq`, and JoinRun replays from any cursor on any
replica; so a broken stream is resumed by joining again with the last seq
delivered. Events at or below that seq are dropped, so the caller sees each
event exactly once, in order, whatever the server resends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import grpc

from stepstream.client.errors import from_rpc_error
from stepstream.client.events import RunEvent, decode_event
from stepstream.client.pool import ChannelPool, is_unavailable, never_sent
from stepstream.v1 import events_pb2, runs_pb2

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0


class _Backoff:
    """Exponential delays between reconnects, bounded in total by `budget` seconds."""

    def __init__(self, budget: float) -> None:
        self._budget = budget
        self.reset()

    def reset(self) -> None:
        self._since: float | None = None
        self._delay = _FIRST_DELAY

    async def wait(self, error: grpc.RpcError) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._since >= self._budget:
            raise from_rpc_error(error) from error
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, _MAX_DELAY)


class _Cursor:
    """The last seq delivered of one run; filters out what was already seen."""

    def __init__(self, after_seq: int) -> None:
        self.run_id = ""
        self.seq = after_seq

    def take(self, events: Sequence[events_pb2.RunEvent]) -> list[RunEvent]:
        fresh: list[RunEvent] = []
        for msg in events:
            if msg.seq <= self.seq:
                continue
            self.seq = msg.seq
            self.run_id = self.run_id or msg.run_id
            fresh.append(decode_event(msg))
        return fresh


async def follow_run(
    pool: ChannelPool,
    run_id: str,
    after_seq: int,
    kinds: Sequence[events_pb2.EventKind.ValueType],
    subgraphs: bool,
    backoff: _Backoff | None = None,
) -> AsyncGenerator[RunEvent, None]:
    """JoinRun from `after_seq`, reopened on UNAVAILABLE with the last seq seen."""
    cursor = _Cursor(after_seq)
    backoff = backoff or _Backoff(pool.settings.reconnect_timeout)
    while True:
        endpoint = pool.order()[0]
        request = runs_pb2.JoinRunRequest(
            run_id=run_id, after_seq=cursor.seq, event_kinds=kinds, subgraphs=subgraphs
        )
        call: Any = endpoint.runs.JoinRun(request, metadata=pool.settings.metadata)
        try:
            async for response in call:
                events = cursor.take(response.events)
                if events:
                    backoff.reset()
                for event in events:
                    yield event
                    if event.terminal:
                        return
            return
        except grpc.RpcError as error:
            if not is_unavailable(error):
                raise from_rpc_error(error) from error
            pool.mark_down(endpoint)
            await backoff.wait(error)
        finally:
            call.cancel()


async def stream_new_run(
    pool: ChannelPool, request: runs_pb2.StreamRunRequest
) -> AsyncGenerator[RunEvent, None]:
    """StreamRun; once the run id is known, a broken stream continues through follow_run."""
    cursor = _Cursor(0)
    backoff = _Backoff(pool.settings.reconnect_timeout)
    broken: grpc.RpcError | None = None
    for endpoint in pool.order():
        call: Any = endpoint.runs.StreamRun(request, metadata=pool.settings.metadata)
        try:
            async for response in call:
                for event in cursor.take(response.events):
                    yield event
                    if event.terminal:
                        return
            return
        except grpc.RpcError as error:
            if not is_unavailable(error):
                raise from_rpc_error(error) from error
            pool.mark_down(endpoint)
            broken = error
            if cursor.run_id or not never_sent(error):
                break
        finally:
            call.cancel()
    if broken is None:
        return
    if not cursor.run_id:
        # The run may or may not have been created; starting it again could run it twice.
        raise from_rpc_error(broken) from broken
    await backoff.wait(broken)
    async for event in follow_run(
        pool, cursor.run_id, cursor.seq, list(request.event_kinds), request.subgraphs, backoff
    ):
        yield event
