"""The bidirectional session stream: one front end drives one session over one stream.

Actions arrive in order and are answered in order; the events of the runs
they start are interleaved as they happen. A failed action is answered with a
StreamError and the stream stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from stepstream.server.api import convert
from stepstream.server.api.limits import RequestLimits, check_request
from stepstream.server.api.status import status_of
from stepstream.server.core import records as rec
from stepstream.server.core.app import Core
from stepstream.server.core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from stepstream.server.core.events import EventFilter
from stepstream.server.core.jsonio import parse_field
from stepstream.server.core.start import StartRunRequest
from stepstream.v1 import sessions_pb2

Response = sessions_pb2.SessionStreamResponse


class SessionStreamHandler:
    def __init__(self, core: Core, owner: str) -> None:
        self._core = core
        self._owner = owner
        self._session: rec.Session | None = None
        # The assistant the stream's runs use, when it was opened with one.
        self._assistant_id = ""
        self._filter = EventFilter()
        # Whether the client asked for a run's committed events in one response each time.
        self._batch_events = False
        self._out: asyncio.Queue[Response | None] = asyncio.Queue()
        self._followers: set[asyncio.Task[None]] = set()
        self._limits = RequestLimits.of(core.settings)

    async def serve(
        self, requests: AsyncIterator[sessions_pb2.SessionStreamRequest]
    ) -> AsyncIterator[Response]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                item = await self._out.get()
                if item is None:
                    return
                yield item
        finally:
            reader.cancel()
            for task in list(self._followers):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, requests: AsyncIterator[sessions_pb2.SessionStreamRequest]) -> None:
        try:
            async for request in requests:
                try:
                    check_request(request, self._limits)
                    await self._handle(request)
                except Exception as exc:
                    status = status_of(exc)
                    error = sessions_pb2.StreamError(
                        code=status.code,
                        message=status.message,
                        field=exc.field if isinstance(exc, InvalidArgument) else "",
                        retry_after_seconds=exc.retry_after if isinstance(exc, ResourceExhausted) else 0.0,
                    )
                    self._out.put_nowait(Response(request_id=request.request_id, error=error))
            # The client has said all it will say: finish once its runs' events are out.
            while self._followers:
                await asyncio.wait(list(self._followers))
        finally:
            self._out.put_nowait(None)

    async def _handle(self, request: sessions_pb2.SessionStreamRequest) -> None:
        action = request.WhichOneof("action")
        rid = request.request_id
        if action is None:
            raise InvalidArgument("action", "set one of open, start_run, resume, cancel, update_state")
        if action == "open":
            await self._open(rid, request.open)
            return
        if self._session is None:
            raise FailedPrecondition("send open first: the stream needs a session")
        session_id = self._session.session_id
        if action == "start_run":
            field = "start_run.options"
            start = StartRunRequest(
                owner=self._owner,
                session_id=session_id,
                input_json=request.start_run.input_json,
                options=convert.options_request(request.start_run.options, field),
                options_field=field,
                assistant_id=self._assistant_id,
                context_json=request.start_run.context_json,
                context_field="start_run.context_json",
            )
            self._answer_with_run(rid, await self._core.start_run(start))
        elif action == "resume":
            command = convert.command_request(request.resume)
            start = StartRunRequest(
                owner=self._owner,
                session_id=session_id,
                command=command,
                command_field="resume",
                assistant_id=self._assistant_id,
            )
            self._answer_with_run(rid, await self._core.start_run(start))
        elif action == "cancel":
            run = await self._core.cancel_session_run(self._owner, session_id, request.cancel.rollback)
            self._out.put_nowait(Response(request_id=rid, cancelled=convert.run_pb(run)))
        elif action == "update_state":
            update = request.update_state
            values = parse_field("update_state.values_json", update.values_json)
            checkpoint_id = await self._core.update_session_state(
                self._owner, session_id, values, update.as_node, update.checkpoint_id
            )
            answer = sessions_pb2.UpdateSessionStateResponse(checkpoint_id=checkpoint_id)
            self._out.put_nowait(Response(request_id=rid, state_updated=answer))

    async def _open(self, rid: str, request: sessions_pb2.OpenSession) -> None:
        if self._session is not None:
            raise FailedPrecondition("this stream already has a session; open another stream for another")
        self._filter = convert.event_filter(request.event_kinds, request.subgraphs)
        self._batch_events = request.batch_events
        graph_id = request.graph_id
        if request.assistant_id:
            if graph_id:
                raise InvalidArgument("open.assistant_id", "name a graph_id or an assistant_id, not both")
            assistant = await self._core.get_assistant(self._owner, request.assistant_id)
            graph_id = assistant.graph_id
        if request.session_id:
            session = await self._core.get_session(self._owner, request.session_id)
            if request.assistant_id and session.graph_id != graph_id:
                raise InvalidArgument(
                    "open.assistant_id",
                    f"session {session.session_id!r} runs graph {session.graph_id!r}, "
                    f"the assistant graph {graph_id!r}",
                )
            self._session = session
        elif request.resume_run_id:
            raise InvalidArgument("open.resume_run_id", "needs the session_id of the run's session")
        else:
            metadata = parse_field("open.metadata_json", request.metadata_json, object_only=True)
            self._session = await self._core.create_session(self._owner, graph_id, metadata=metadata)
        self._assistant_id = request.assistant_id
        self._out.put_nowait(Response(request_id=rid, session=convert.session_pb(self._session)))
        if request.resume_run_id:
            run = await self._core.get_run(self._owner, request.resume_run_id)
            if run.session_id != self._session.session_id:
                raise InvalidArgument("open.resume_run_id", f"run {run.run_id!r} is not of this session")
            self._follow_run(rid, run, request.after_seq)

    def _answer_with_run(self, rid: str, run: rec.Run) -> None:
        self._out.put_nowait(Response(request_id=rid, run=convert.run_pb(run)))
        self._follow_run(rid, run, 0)

    def _follow_run(self, rid: str, run: rec.Run, after_seq: int) -> None:
        task = asyncio.create_task(self._follow(rid, run, after_seq))
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)

    async def _follow(self, rid: str, run: rec.Run, after_seq: int) -> None:
        async for batch in self._core.run_events(run, after_seq, self._filter):
            if self._batch_events:
                events = sessions_pb2.RunEventBatch(events=[convert.event_pb(e) for e in batch])
                self._out.put_nowait(Response(request_id=rid, events=events))
                continue
            for event in batch:
                self._out.put_nowait(Response(request_id=rid, event=convert.event_pb(event)))
