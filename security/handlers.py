"""What every server interceptor here does to a method's handler: run a check ahead of it.

A grpc.aio interceptor that must see the call (its metadata, its request) wraps
the method's handler, and there are four kinds of handler to rebuild. The
authentication, request-limit and malformed-request interceptors all do it
through `with_check`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Context = Any  # grpc.aio.ServicerContext
# Awaited before the handler with the request, or None when the requests are streamed.
Check = Callable[[Any, Context], Awaitable[None]]
# Wraps a stream of requests (e.g. to check each as it arrives).
StreamCheck = Callable[[AsyncIterator[Any], Context], AsyncIterator[Any]]


def with_check(
    handler: grpc.RpcMethodHandler,
    check: Check,
    stream_check: StreamCheck | None = None,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """`handler`, any kind, with `check` awaited before it runs (an abort in it ends the call).

    Streamed requests also pass through `stream_check`; `request_deserializer`
    replaces the handler's own when given.
    """
    h: Any = handler
    decode = request_deserializer or h.request_deserializer
    encode = h.response_serializer
    if h.unary_unary:
        inner_uu = h.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            await check(request, context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, decode, encode)
    if h.unary_stream:
        inner_us = h.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await check(request, context)
            async with contextlib.aclosing(inner_us(request, context)) as items:
                async for item in items:
                    yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, decode, encode)

    def requests_of(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        return requests if stream_check is None else stream_check(requests, context)

    if h.stream_unary:
        inner_su = h.stream_unary

        async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
            await check(None, context)
            return await inner_su(requests_of(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, decode, encode)
    inner_ss = h.stream_stream

    async def stream_stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        await check(None, context)
        async with contextlib.aclosing(inner_ss(requests_of(requests, context), context)) as items:
            async for item in items:
                yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, decode, encode)
