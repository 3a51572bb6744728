"""Many acquires over one AcquireStream call: the cheap path for a busy client.

A unary call per grant costs a gRPC call setup on both sides; on one long-lived
stream a grant is one message each way. Requests carry ids; one writer task
sends them in order and one reader task hands each response to its waiter.
A broken stream fails every waiter with the gRPC error, so the caller's fault
mode applies, and the next acquire opens a new stream.
"""

from __future__ import annotations

import asyncio
import collections

import grpc

from stepstream.ratelimiter.telemetry import outgoing_carrier
from stepstream.v1 import ratelimit_pb2 as pb
from stepstream.v1 import ratelimit_pb2_grpc as pb_grpc


class StreamItemError(Exception):
    """The sidecar answered this acquire with an error (the stream goes on)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AcquireStream:
    def __init__(
        self, stub: pb_grpc.RateLimiterServiceStub, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._call = stub.AcquireStream(metadata=metadata)
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future[pb.AcquireStreamResponse]] = {}
        self._outbox: collections.deque[pb.AcquireStreamRequest] = collections.deque()
        self._ready = asyncio.Event()
        self._next_id = 0
        self.broken: BaseException | None = None
        self._writer = self._loop.create_task(self._write())
        self._reader = self._loop.create_task(self._read())

    async def acquire(self, request: pb.AcquireRequest, timeout: float) -> pb.AcquireResponse:
        """The sidecar's answer; raises ConnectionError (stream broken), StreamItemError or TimeoutError."""
        if self.broken is not None:
            raise self.broken
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[pb.AcquireStreamResponse] = self._loop.create_future()
        self._pending[request_id] = future
        # One stream carries many callers: each acquire carries its own caller's trace context.
        self._outbox.append(
            pb.AcquireStreamRequest(id=request_id, acquire=request, trace_context=outgoing_carrier())
        )
        self._ready.set()
        try:
            async with asyncio.timeout(timeout):
                response = await future
        finally:
            self._pending.pop(request_id, None)
        if response.error_code:
            raise StreamItemError(response.error_code, response.error_message)
        return response.acquire

    async def _write(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._outbox:
                    await self._call.write(self._outbox.popleft())
        except Exception as exc:  # a write fails when the stream is gone, whatever the cause
            self._fail(exc)

    async def _read(self) -> None:
        try:
            async for response in self._call:
                future = self._pending.get(response.id)
                if future is not None and not future.done():
                    future.set_result(response)
            self._fail(ConnectionError("the sidecar ended the acquire stream"))
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        # Waiters see a ConnectionError whatever broke the stream (the sidecar went
        # away, or answered with a status): their fault mode decides what follows.
        if not isinstance(exc, ConnectionError):
            detail = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
            exc = ConnectionError(f"the acquire stream broke: {detail}")
        if self.broken is None:
            self.broken = exc
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()

    async def close(self) -> None:
        self._fail(ConnectionError("closed"))
        self._call.cancel()
        for task in (self._writer, self._reader):
            task.cancel()
        await asyncio.gather(self._writer, self._reader, return_exceptions=True)
