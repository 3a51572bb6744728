"""Server-streamed run events, kept alive across replica failures.

Every event has a per-run `seq`, and JoinRun replays from any cursor on any
replica; so a broken stream is resumed by joining again with the last seq
delivered. Events at or below that seq are dropped, so the caller sees each
event exactly once, in order, whatever the server resends.

A stream is broken when it fails with UNAVAILABLE, and also when it ends
cleanly before the run's last event while the run has not ended (a draining
replica may close streams that way).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import grpc

from stepstream.client.errors import StepstreamError, UnavailableError, from_rpc_error
from stepstream.client.events import RunEvent, decode_event
from stepstream.client.models import RunStatus
from stepstream.client.pool import ChannelPool, Endpoint, Lease, is_unavailable, never_sent
from stepstream.v1 import events_pb2, runs_pb2

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0
# Seconds to wait for the server to close a stream whose last event has come.
_CLOSE_SECONDS = 1.0


class _Backoff:
    """Exponential delays between reconnects, bounded in total by `budget` seconds."""

    def __init__(self, budget: float) -> None:
        self._budget = budget
        self.reset()

    def reset(self) -> None:
        self._since: float | None = None
        self._delay = _FIRST_DELAY

    async def wait(self, error: StepstreamError) -> None:
        """Sleep before the next attempt; raise `error` once the budget is spent."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._since >= self._budget:
            raise error
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, _MAX_DELAY)


class _Cursor:
    """The last seq delivered of one run; filters out what was already seen."""

    def __init__(self, after_seq: int) -> None:
        self.run_id = ""
        self.seq = after_seq
        self.ended = False

    def take(self, events: Sequence[events_pb2.RunEvent]) -> list[RunEvent]:
        fresh: list[RunEvent] = []
        for msg in events:
            if msg.seq <= self.seq or self.ended:
                continue
            self.seq = msg.seq
            self.run_id = self.run_id or msg.run_id
            event = decode_event(msg)
            self.ended = event.terminal
            fresh.append(event)
        return fresh


async def _closed_by_server(call: Any, endpoint: Endpoint) -> None:
    """Read a stream to its end after the run's last event, and the replica in its trailer.

    The server closes the stream right after that event. Reading its status costs
    little; cancelling the call instead (what leaving it open would come to) costs
    both sides a reset stream and the server a cancelled handler.
    """
    try:
        async with asyncio.timeout(_CLOSE_SECONDS):
            async for _ in call:
                pass
            endpoint.learn_replica(await call.trailing_metadata())
    except (TimeoutError, grpc.RpcError):
        pass  # the events are all in; the finally's cancel() ends it


async def _run_is_over(pool: ChannelPool, cursor: _Cursor) -> bool:
    """After a clean end without the last event: true when nothing more will come."""
    try:
        response: runs_pb2.GetRunResponse = await pool.unary(
            "runs", "GetRun", runs_pb2.GetRunRequest(run_id=cursor.run_id), idempotent=True
        )
    except UnavailableError:
        return False  # no replica answers now: keep trying to rejoin
    status = RunStatus.from_proto(response.run.status)
    return status.ended and response.run.last_seq <= cursor.seq


async def follow_run(
    pool: ChannelPool,
    run_id: str,
    after_seq: int,
    kinds: Sequence[events_pb2.EventKind.ValueType],
    subgraphs: bool,
    backoff: _Backoff | None = None,
) -> AsyncGenerator[RunEvent, None]:
    """JoinRun from `after_seq`, reopened with the last seq seen until the run's last event."""
    cursor = _Cursor(after_seq)
    cursor.run_id = run_id
    backoff = backoff or _Backoff(pool.settings.reconnect_timeout)
    while True:
        endpoint = pool.order()[0]
        request = runs_pb2.JoinRunRequest(
            run_id=run_id, after_seq=cursor.seq, event_kinds=kinds, subgraphs=subgraphs
        )
        call: Any = endpoint.runs.JoinRun(request, metadata=pool.settings.metadata)
        lease = Lease(endpoint)
        try:
            async for response in call:
                events = cursor.take(response.events)
                if events:
                    backoff.reset()
                if cursor.ended:
                    await _closed_by_server(call, endpoint)
                for event in events:
                    yield event
                if cursor.ended:
                    return
        except grpc.RpcError as error:
            if not is_unavailable(error):
                raise from_rpc_error(error) from error
            pool.mark_down(endpoint)
            await backoff.wait(from_rpc_error(error))
            continue
        finally:
            call.cancel()
            lease.release()
        if await _run_is_over(pool, cursor):
            return
        await backoff.wait(UnavailableError(f"the event stream of run {run_id} ended before the run"))


async def stream_new_run(
    pool: ChannelPool, request: runs_pb2.StreamRunRequest
) -> AsyncGenerator[RunEvent, None]:
    """StreamRun; once the run id is known, a broken stream continues through follow_run."""
    cursor = _Cursor(0)
    backoff = _Backoff(pool.settings.reconnect_timeout)
    unreached: grpc.RpcError | None = None
    for endpoint in pool.order():
        call: Any = endpoint.runs.StreamRun(request, metadata=pool.settings.metadata)
        lease = Lease(endpoint)
        try:
            async for response in call:
                events = cursor.take(response.events)
                if cursor.ended:
                    await _closed_by_server(call, endpoint)
                for event in events:
                    yield event
                if cursor.ended:
                    return
            break  # ended cleanly but early: continue by joining
        except grpc.RpcError as error:
            if not is_unavailable(error):
                raise from_rpc_error(error) from error
            pool.mark_down(endpoint)
            if not cursor.run_id and never_sent(error):
                unreached = error
                continue  # the run was never created: another replica may start it
            if not cursor.run_id:
                # The run may or may not exist; starting it again could run it twice.
                raise from_rpc_error(error) from error
            await backoff.wait(from_rpc_error(error))
            break
        finally:
            call.cancel()
            lease.release()
    else:
        assert unreached is not None
        raise from_rpc_error(unreached) from unreached
    if not cursor.run_id:
        return  # the server ended the stream before any event: nothing to follow
    async for event in follow_run(
        pool, cursor.run_id, cursor.seq, list(request.event_kinds), request.subgraphs, backoff
    ):
        yield event
