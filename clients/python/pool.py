"""grpc.aio channels to the server addresses, balanced by calls in flight, failed over.

Replicas are equal (any of them serves any request). Each address gets
`connections` channels, each its own HTTP/2 connection: on a server running
several worker processes on one port (`serve --workers`), the kernel hands each
new connection to one worker at random, so a client needs several connections
to use them all, and they rarely land evenly. Every call ends with a trailer
naming the replica (the worker) that answered it, so the pool knows which
connections share a process. A call goes to the replica with the fewest calls in
flight, and of its connections to the one with the fewest (ties in rotation): a
worker that drew 10 of 16 connections gets half the calls, not 10/16 of them.
A connection whose replica is not known yet counts as a replica of its own.

A call that fails with UNAVAILABLE is tried on the next address when that
cannot do a write twice: always for reads, and for writes only
when the request never reached a server (the connection could not be made).
An address that failed is tried last for a short while.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from stepstream.client.errors import from_rpc_error
from stepstream.v1 import (
    assistants_pb2_grpc,
    crons_pb2_grpc,
    graphs_pb2_grpc,
    runs_pb2_grpc,
    sessions_pb2_grpc,
    store_pb2_grpc,
)

T = TypeVar("T")

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Seconds an address that answered UNAVAILABLE is moved to the back of the rotation.
_DOWN_SECONDS = 2.0
# Trailing metadata naming the replica that answered a call (the server sets it on every call).
REPLICA_TRAILER = "stepstream-replica"
# Texts grpc-core uses when no connection could be made: the request was never sent.
_NOT_CONNECTED = ("failed to connect", "connection refused", "connections to all backends failing")


class _Default:
    """Marks "use the client's default deadline" apart from None (no deadline)."""


_DEFAULT = _Default()


@dataclasses.dataclass
class Endpoint:
    address: str
    channel: Any  # grpc.aio.Channel (grpcio ships no type information)
    graphs: Any
    sessions: Any
    runs: Any
    store: Any
    assistants: Any
    crons: Any
    webhooks: Any
    down_until: float = 0.0
    # Unary calls, run streams and session streams open on this connection.
    in_flight: int = 0
    # The replica that answered the last call on this connection ("" until one ends); a
    # connection that reconnects may reach another, which its next call's trailer tells.
    replica: str = ""

    def learn_replica(self, trailing_metadata: Any) -> None:
        """Note the replica named in a finished call's trailing metadata (grpc.aio.Metadata)."""
        replica = trailing_metadata.get(REPLICA_TRAILER) if trailing_metadata else None
        if replica:
            self.replica = replica


class Lease:
    """One call's hold on an endpoint, counted in its `in_flight` until released (once)."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint: Endpoint | None = endpoint
        endpoint.in_flight += 1

    def release(self) -> None:
        if self.endpoint is not None:
            self.endpoint.in_flight -= 1
            self.endpoint = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def never_sent(error: grpc.RpcError) -> bool:
    """True when an UNAVAILABLE error means the request never reached a server."""
    call: Any = error
    text = f"{call.details()} {call.debug_error_string()}".lower()
    return any(marker in text for marker in _NOT_CONNECTED)


def is_unavailable(error: grpc.RpcError) -> bool:
    call: Any = error
    return bool(call.code() == grpc.StatusCode.UNAVAILABLE)


@dataclasses.dataclass(frozen=True)
class CallSettings:
    """What every call of one client carries."""

    # Extra gRPC metadata (e.g. credentials of a tenant), sent with every call.
    metadata: tuple[tuple[str, str], ...] = ()
    # Deadline in seconds of unary calls (not of streams or wait); None: none.
    timeout: float | None = None
    # Seconds a broken event stream keeps trying to reconnect before giving up.
    reconnect_timeout: float = 30.0


class ChannelPool:
    def __init__(
        self,
        addresses: Sequence[str],
        *,
        settings: CallSettings | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
        connections: int = 1,
    ) -> None:
        if not addresses:
            raise ValueError("at least one server address is needed")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.primary_user_agent", "stepstream-python"),
            *channel_options,
        ]
        if connections > 1:
            # Channels of one process with equal arguments share one connection unless told not to.
            options.append(("grpc.use_local_subchannel_pool", 1))
        self.settings = settings or CallSettings()
        self.addresses = tuple(dict.fromkeys(addresses))
        self.endpoints = [
            self._endpoint(a, credentials, options) for _ in range(connections) for a in self.addresses
        ]
        self._next = itertools.count()

    @staticmethod
    def _endpoint(
        address: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]]
    ) -> Endpoint:
        if credentials is None:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            channel = grpc.aio.secure_channel(address, credentials, options=options)
        return Endpoint(
            address=address,
            channel=channel,
            graphs=graphs_pb2_grpc.GraphServiceStub(channel),
            sessions=sessions_pb2_grpc.SessionServiceStub(channel),
            runs=runs_pb2_grpc.RunServiceStub(channel),
            store=store_pb2_grpc.StoreServiceStub(channel),
            assistants=assistants_pb2_grpc.AssistantServiceStub(channel),
            crons=crons_pb2_grpc.CronServiceStub(channel),
            webhooks=crons_pb2_grpc.WebhookServiceStub(channel),
        )

    def order(self) -> list[Endpoint]:
        """Endpoints to try for one call, one per address: of each address the replica with the
        fewest calls in flight, and of its connections the one with the fewest; the address with
        the fewest first, recently failed ones last. Ties go by rotation."""
        count = len(self.endpoints)
        start = next(self._next) % count
        rotated = [self.endpoints[(start + i) % count] for i in range(count)]
        groups = [self._replica_of(endpoint) for endpoint in rotated]
        per_replica: dict[tuple[str, str | int], int] = {}
        totals: dict[str, int] = {}
        for endpoint, group in zip(rotated, groups, strict=True):
            per_replica[group] = per_replica.get(group, 0) + endpoint.in_flight
            totals[endpoint.address] = totals.get(endpoint.address, 0) + endpoint.in_flight
        # Per address: (calls of its replica, calls of the connection), the endpoint; first wins ties.
        best: dict[str, tuple[tuple[int, int], Endpoint]] = {}
        for endpoint, group in zip(rotated, groups, strict=True):
            load = (per_replica[group], endpoint.in_flight)
            if endpoint.address not in best or load < best[endpoint.address][0]:
                best[endpoint.address] = (load, endpoint)
        one_each = [endpoint for _, endpoint in best.values()]
        now = time.monotonic()
        return sorted(one_each, key=lambda ep: (ep.down_until > now, totals[ep.address]))

    @staticmethod
    def _replica_of(endpoint: Endpoint) -> tuple[str, str | int]:
        # Connections whose replica is unknown are each a group of their own.
        return (endpoint.address, endpoint.replica or id(endpoint))

    def mark_down(self, endpoint: Endpoint) -> None:
        until = time.monotonic() + _DOWN_SECONDS
        for each in self.endpoints:
            if each.address == endpoint.address:
                each.down_until = until

    async def call(self, invoke: Callable[[Endpoint], Awaitable[T]], *, idempotent: bool) -> T:
        """Run one unary call, failing over on UNAVAILABLE where that is safe."""
        last: grpc.RpcError | None = None
        for endpoint in self.order():
            try:
                with Lease(endpoint):
                    return await invoke(endpoint)
            except grpc.RpcError as error:
                if not is_unavailable(error):
                    raise from_rpc_error(error) from error
                self.mark_down(endpoint)
                if not (idempotent or never_sent(error)):
                    raise from_rpc_error(error) from error
                last = error
        assert last is not None
        raise from_rpc_error(last) from last

    async def unary(
        self,
        service: str,
        method: str,
        request: Any,
        *,
        idempotent: bool,
        timeout: float | _Default | None = _DEFAULT,
    ) -> Any:
        """Call `service.method` (e.g. "runs", "GetRun") with the client's metadata and deadline."""
        deadline = self.settings.timeout if isinstance(timeout, _Default) else timeout

        async def invoke(endpoint: Endpoint) -> Any:
            stub = getattr(endpoint, service)
            call = getattr(stub, method)(request, timeout=deadline, metadata=self.settings.metadata)
            response = await call
            endpoint.learn_replica(await call.trailing_metadata())
            return response

        return await self.call(invoke, idempotent=idempotent)

    async def close(self, grace: float | None = None) -> None:
        for endpoint in self.endpoints:
            await endpoint.channel.close(grace)
