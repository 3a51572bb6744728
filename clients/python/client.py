"""StepstreamClient: the entry point, one object per application."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from stepstream.client.assistants import Assistants
from stepstream.client.crons import Crons
from stepstream.client.events import EventKind
from stepstream.client.graphs import Graphs
from stepstream.client.jsonio import Json
from stepstream.client.pool import DEFAULT_MAX_MESSAGE_BYTES, CallSettings, ChannelPool
from stepstream.client.runs import Runs
from stepstream.client.session_stream import SessionStream
from stepstream.client.sessions import Sessions
from stepstream.client.store import Store


def tls_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials from PEM files: the CA to trust (None: the system's roots)
    and, for mTLS, a client certificate with its key."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs both tls_cert_file and tls_key_file")

    def read(path: str | None) -> bytes | None:
        return pathlib.Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


class StepstreamClient:
    """An async client of one stepstream deployment.

    `address` is "host:port", or a list of them (replicas): each call goes to
    the address with the fewest calls in flight (ties in rotation) and fails
    over to the next on UNAVAILABLE where a retry cannot repeat a write. Use it
    as an async context manager, or call `close()`.

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
        api_key: str | None = None,
        token: str | None = None,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        connections: int = 1,
    ) -> None:
        """
        credentials: TLS channel credentials; None for plaintext (or the tls_* files below).
        metadata: sent with every call (e.g. an authorization header).
        timeout: deadline in seconds of unary calls; None: no deadline.
        reconnect_timeout: how long a broken event stream keeps reconnecting.
        max_message_bytes: largest message sent or received; the server's default is 4 MiB.
        channel_options: extra grpc channel arguments (e.g. keepalive).
        api_key: sent as `x-api-key` with every call; token: a JWT, sent as `authorization: Bearer`.
        tls_ca_file: connect over TLS trusting this CA (PEM); tls_cert_file and tls_key_file:
          a client certificate, for servers that require one (mTLS).
        connections: HTTP/2 connections per address, each call on the one with the fewest calls
          in flight; more than one spreads a busy client over the worker processes of a
          `serve --workers` server.
        """
        addresses = [address] if isinstance(address, str) else list(address)
        pairs = list(metadata.items() if isinstance(metadata, Mapping) else metadata)
        if api_key:
            pairs.append(("x-api-key", api_key))
        if token:
            pairs.append(("authorization", f"Bearer {token}"))
        if credentials is None and (tls_ca_file or tls_cert_file):
            credentials = tls_credentials(tls_ca_file, tls_cert_file, tls_key_file)
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
            connections=connections,
        )
        self.graphs = Graphs(self._pool)
        self.sessions = Sessions(self._pool)
        self.runs = Runs(self._pool)
        self.store = Store(self._pool)
        self.assistants = Assistants(self._pool)
        self.crons = Crons(self._pool)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._pool.addresses

    def session_stream(
        self,
        *,
        session_id: str | None = None,
        graph_id: str | None = None,
        metadata: Mapping[str, Json] | None = None,
        kinds: Iterable[EventKind | str] | None = None,
        subgraphs: bool = False,
        assistant_id: str | None = None,
    ) -> SessionStream:
        """A bidirectional session stream on an existing session, or a new one of `graph_id`
        (or of `assistant_id`'s graph: the stream's runs then use that assistant).

        Use as `async with client.session_stream(graph_id="g") as stream:`.
        """
        return SessionStream(
            self._pool,
            session_id=session_id,
            graph_id=graph_id,
            metadata=metadata,
            kinds=kinds,
            subgraphs=subgraphs,
            assistant_id=assistant_id,
        )

    async def close(self, grace: float | None = None) -> None:
        await self._pool.close(grace)

    async def __aenter__(self) -> StepstreamClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
