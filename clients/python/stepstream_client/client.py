"""StepstreamClient: the entry point, one object per application."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from stepstream.client.events import EventKind
from stepstream.client.graphs import Graphs
from stepstream.client.jsonio import Json
from stepstream.client.pool import DEFAULT_MAX_MESSAGE_BYTES, CallSettings, ChannelPool
from stepstream.client.runs import Runs
from stepstream.client.session_stream import SessionStream
from stepstream.client.sessions import Sessions


class StepstreamClient:
    """An async client of one stepstream deployment.

    `address` is "host:port", or a list of them (replicas): calls rotate
    over the addresses and fail over to the next on UNAVAILABLE where a retry
    cannot repeat a write. Use it as an async context manager, or call
    `close()`.

        async with StepstreamClient("127.0.0.1:50051") as client:
            run = await client.runs.start("linear", {"x": 1})
            async for event in client.runs.join(run.run_id):
                print(event.seq, event.kind)
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        timeout: float | None = None,
        reconnect_timeout: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """
        credentials: TLS channel credentials; None for plaintext.
        metadata: sent with every call (e.g. an authorization header).
        timeout: deadline in seconds of unary calls; None: no deadline.
        reconnect_timeout: how long a broken event stream keeps reconnecting.
        max_message_bytes: largest message sent or received; the server's default is 4 MiB.
        channel_options: extra grpc channel arguments (e.g. keepalive).
        """
        addresses = [address] if isinstance(address, str) else list(address)
        pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
        settings = CallSettings(
            metadata=tuple((k.lower(), v) for k, v in pairs),
            timeout=timeout,
            reconnect_timeout=reconnect_timeout,
        )
        self._pool = ChannelPool(
            addresses,
            settings=settings,
            credentials=credentials,
            max_message_bytes=max_message_bytes,
            channel_options=channel_options,
        )
        self.graphs = Graphs(self._pool)
        self.sessions = Sessions(self._pool)
        self.runs = Runs(self._pool)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(ep.address for ep in self._pool.endpoints)

    def session_stream(
        self,
        *,
        session_id: str | None = None,
        graph_id: str | None = None,
        metadata: Mapping[str, Json] | None = None,
        kinds: Iterable[EventKind | str] | None = None,
        subgraphs: bool = False,
    ) -> SessionStream:
        """A bidirectional session stream on an existing session, or a new one of `graph_id`.

        Use as `async with client.session_stream(graph_id="g") as stream:`.
        """
        return SessionStream(
            self._pool,
            session_id=session_id,
            graph_id=graph_id,
            metadata=metadata,
            kinds=kinds,
            subgraphs=subgraphs,
        )

    async def close(self, grace: float | None = None) -> None:
        await self._pool.close(grace)

    async def __aenter__(self) -> StepstreamClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
