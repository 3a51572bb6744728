"""SessionService.SessionStream: one bidirectional stream per interactive session.

Each action (open, start_run, resume, cancel, update_state) is sent with its
own request id and awaited until the server answers that id; a reader task
routes answers to their waiters and every run event to a queue the caller
iterates. An action the server refuses raises a StepstreamError while the
stream stays open, as the contract says. When the connection breaks, the
stream reopens on the session (the next address first) from the last event
seen, and no event is delivered twice; an action still unanswered at the break
fails with UnavailableError, as it may or may not have been applied.

    async with client.session_stream(graph_id="ask") as stream:
        run = await stream.start_run({"topic": "x"})
        async for event in stream.events(run.run_id):
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from types import TracebackType
from typing import Any

import grpc

from stepstream.client.errors import (
    StepstreamError,
    UnavailableError,
    from_rpc_error,
    from_stream_error,
    make_error,
)
from stepstream.client.events import EventKind, RunEvent, decode_event, kinds_to_proto
from stepstream.client.jsonio import Json, encode_optional
from stepstream.client.models import Run, Session
from stepstream.client.options import UNSET, Command, RunOptions
from stepstream.client.pool import ChannelPool, Endpoint, Lease
from stepstream.client.sessions import update_state_request
from stepstream.v1 import sessions_pb2

# Pause between rounds over every address while reopening a broken stream.
REOPEN_PAUSE_S = 0.2

# What an answer resolves to: the decoded oneof value of the response.
_Answer = Session | Run | str


class _Closed:
    """Queued once when the stream ends, with the error that ended it, if any."""

    def __init__(self, error: StepstreamError | None) -> None:
        self.error = error


class SessionStream:
    def __init__(
        self,
        pool: ChannelPool,
        *,
        session_id: str | None = None,
        graph_id: str | None = None,
        metadata: Mapping[str, Json] | None = None,
        kinds: Iterable[EventKind | str] | None = None,
        subgraphs: bool = False,
        assistant_id: str | None = None,
    ) -> None:
        if not session_id and not graph_id and not assistant_id:
            raise ValueError(
                "give the session_id of an existing session, or a graph_id or assistant_id to create one"
            )
        self._pool = pool
        self._open = sessions_pb2.OpenSession(
            session_id=session_id or "",
            graph_id=graph_id or "",
            metadata_json=encode_optional(metadata),
            event_kinds=kinds_to_proto(kinds),
            subgraphs=subgraphs,
            batch_events=True,
            assistant_id=assistant_id or "",
        )
        self._ids = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self.session: Session | None = None
        # The open stream's hold on its connection (the pool sends other calls to quieter ones).
        self._lease: Lease | None = None
        self._reset()

    def _reset(self) -> None:
        # The last seq seen of each run on this stream, and the runs that have ended:
        # after a broken connection the stream reopens from there.
        self._cursor: dict[str, int] = {}
        self._ended: set[str] = set()
        self._waiters: dict[str, asyncio.Future[_Answer]] = {}
        self._queue: asyncio.Queue[RunEvent | StepstreamError | _Closed] = asyncio.Queue()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._closed: StepstreamError | None = None

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> SessionStream:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> Session:
        """Open the stream and the session (created when only a graph id was given)."""
        if self._call is not None:
            raise RuntimeError("the stream is already open")
        unavailable: UnavailableError | None = None
        # Opening is safe to repeat, so an unreachable replica is skipped for the next.
        for endpoint in self._pool.order():
            self._reset()
            self._call = endpoint.sessions.SessionStream(metadata=self._pool.settings.metadata)
            self._hold(endpoint)
            self._reader = asyncio.create_task(self._read(), name="stepstream-session-stream")
            try:
                answer = await self._send(sessions_pb2.SessionStreamRequest(open=self._open))
            except UnavailableError as error:
                await self.close()
                self._pool.mark_down(endpoint)
                unavailable = error
                continue
            except BaseException:
                await self.close()
                raise
            assert isinstance(answer, Session)
            self.session = answer
            return answer
        assert unavailable is not None
        raise unavailable

    async def close(self) -> None:
        """Half-close, then stop reading; pending actions fail with CANCELLED."""
        if self._call is None:
            return
        if self._closed is None:
            try:
                async with self._write_lock:
                    await self._call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                pass
        self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._finish(make_error(grpc.StatusCode.CANCELLED, "the session stream was closed"))

    # -- actions -----------------------------------------------------------

    async def start_run(
        self,
        input: Json = None,
        *,
        options: RunOptions | None = None,
        context: Mapping[str, Json] | None = None,
    ) -> Run:
        """Start a run on the session; its events follow on this stream. `context` is what its
        nodes read through LangGraph's Runtime (checked against the graph's context_schema)."""
        start = sessions_pb2.StartRun(
            input_json=encode_optional(input),
            options=options.to_proto() if options else None,
            context_json=encode_optional(context),
        )
        return await self._run_answer(sessions_pb2.SessionStreamRequest(start_run=start))

    async def resume(self, value: Any = UNSET, *, command: Command | None = None) -> Run:
        """Answer the pending interrupt with `value` (or send a full Command)."""
        if (value is UNSET) == (command is None):
            raise ValueError("give either a resume value or a command")
        command = command or Command(resume=value)
        return await self._run_answer(sessions_pb2.SessionStreamRequest(resume=command.to_proto()))

    async def cancel(self, *, rollback: bool = False) -> Run:
        """Cancel the session's active run; returns the cancelled run."""
        request = sessions_pb2.SessionStreamRequest(cancel=sessions_pb2.CancelActiveRun(rollback=rollback))
        return await self._run_answer(request)

    async def update_state(
        self, values: Mapping[str, Json], *, as_node: str | None = None, checkpoint_id: str | None = None
    ) -> str:
        """Update the session's state; returns the new checkpoint id."""
        session_id = self.session.session_id if self.session else ""
        update = update_state_request(session_id, values, as_node=as_node, checkpoint_id=checkpoint_id)
        answer = await self._send(sessions_pb2.SessionStreamRequest(update_state=update))
        assert isinstance(answer, str)
        return answer

    # -- events ------------------------------------------------------------

    def __aiter__(self) -> AsyncGenerator[RunEvent, None]:
        return self.events()

    async def events(self, run_id: str | None = None) -> AsyncGenerator[RunEvent, None]:
        """Events as they arrive, until the stream ends.

        With `run_id`, only that run's events, ending after its last one
        (events of other runs read meanwhile are dropped).
        """
        while True:
            item = await self._queue.get()
            if isinstance(item, _Closed):
                self._queue.put_nowait(item)  # every later reader sees the end too
                if item.error is not None and item.error.code != grpc.StatusCode.CANCELLED:
                    raise item.error
                return
            if isinstance(item, StepstreamError):
                raise item
            if run_id is not None and item.run_id != run_id:
                continue
            yield item
            if run_id is not None and item.terminal:
                return

    # -- plumbing ----------------------------------------------------------

    async def _run_answer(self, request: sessions_pb2.SessionStreamRequest) -> Run:
        answer = await self._send(request)
        assert isinstance(answer, Run)
        return answer

    async def _send(self, request: sessions_pb2.SessionStreamRequest) -> _Answer:
        if self._call is None:
            raise RuntimeError("open the stream first (async with client.session_stream(...))")
        if self._closed is not None:
            raise self._closed
        request_id = f"r{next(self._ids)}"
        request.request_id = request_id
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        try:
            async with self._write_lock:
                await self._call.write(request)
        except grpc.RpcError as error:
            self._waiters.pop(request_id, None)
            raise from_rpc_error(error) from error
        except asyncio.InvalidStateError as error:
            self._waiters.pop(request_id, None)
            raise self._closed or UnavailableError("the session stream has ended") from error
        try:
            return await waiter
        finally:
            self._waiters.pop(request_id, None)

    async def _read(self) -> None:
        while True:
            error: StepstreamError | None = None
            try:
                while True:
                    response = await self._call.read()
                    if response is grpc.aio.EOF:
                        break
                    self._dispatch(response)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
            broken = error is not None and error.code == grpc.StatusCode.UNAVAILABLE
            if not broken or self.session is None or self._closed is not None:
                self._finish(error or UnavailableError("the server ended the session stream"), error)
                return
            # Whether an unanswered action reached the server cannot be known: say so, then
            # carry on with the session's events from the last seq seen.
            lost = UnavailableError(
                "the connection broke before this action was answered; it may have been applied"
            )
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(lost)
            self._waiters.clear()
            if not await self._reopen():
                assert error is not None
                self._finish(error, error)
                return

    async def _reopen(self) -> bool:
        """Open a new stream on the same session, continuing the latest unfinished run's events."""
        assert self.session is not None
        reopen = sessions_pb2.OpenSession()
        reopen.CopyFrom(self._open)
        reopen.session_id, reopen.graph_id = self.session.session_id, ""
        unfinished = [run_id for run_id in self._cursor if run_id not in self._ended]
        if unfinished:
            reopen.resume_run_id, reopen.after_seq = unfinished[-1], self._cursor[unfinished[-1]]
        deadline = time.monotonic() + self._pool.settings.reconnect_timeout
        while time.monotonic() < deadline:
            for endpoint in self._pool.order():
                call = endpoint.sessions.SessionStream(metadata=self._pool.settings.metadata)
                try:
                    await call.write(sessions_pb2.SessionStreamRequest(request_id="reopen", open=reopen))
                    answer = await call.read()
                except grpc.RpcError as error:
                    call.cancel()
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        return False
                    self._pool.mark_down(endpoint)
                    continue
                if answer is grpc.aio.EOF or answer.WhichOneof("kind") != "session":
                    call.cancel()
                    return False
                async with self._write_lock:
                    self._call = call
                self._hold(endpoint)
                return True
            await asyncio.sleep(REOPEN_PAUSE_S)
        return False

    def _dispatch(self, response: sessions_pb2.SessionStreamResponse) -> None:
        kind = response.WhichOneof("kind")
        if kind == "events":
            for message in response.events.events:
                self._deliver(decode_event(message))
            return
        if kind == "event":
            self._deliver(decode_event(response.event))
            return
        answer: _Answer | StepstreamError
        if kind == "session":
            answer = Session.from_proto(response.session)
        elif kind in ("run", "cancelled"):
            answer = Run.from_proto(response.run if kind == "run" else response.cancelled)
            self._cursor.setdefault(answer.run_id, 0)
        elif kind == "state_updated":
            answer = response.state_updated.checkpoint_id
        elif kind == "error":
            answer = from_stream_error(response.error.code, response.error.message, response.error.field)
        else:
            return  # a response kind newer than this SDK
        waiter = self._waiters.pop(response.request_id, None)
        if waiter is None or waiter.done():
            # Nobody awaits this answer: errors still reach the caller through events().
            if isinstance(answer, StepstreamError):
                self._queue.put_nowait(answer)
        elif isinstance(answer, StepstreamError):
            waiter.set_exception(answer)
        else:
            waiter.set_result(answer)

    def _deliver(self, event: RunEvent) -> None:
        if event.seq <= self._cursor.get(event.run_id, 0):
            return  # delivered before the connection broke
        self._cursor[event.run_id] = event.seq
        if event.terminal:
            self._ended.add(event.run_id)
        self._queue.put_nowait(event)

    def _hold(self, endpoint: Endpoint) -> None:
        if self._lease is not None:
            self._lease.release()
        self._lease = Lease(endpoint)

    def _finish(self, reason: StepstreamError, queued: StepstreamError | None = None) -> None:
        """Fail every pending action with `reason` and end the event iteration once."""
        if self._lease is not None:
            self._lease.release()
        if self._closed is not None:
            return
        self._closed = reason
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(reason)
        self._waiters.clear()
        self._queue.put_nowait(_Closed(queued))
