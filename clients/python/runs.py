"""RunService: start, stream, join (with reconnection), get, list, cancel, wait."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Literal

from stepstream.client.events import EventKind, RunEvent, kinds_to_proto
from stepstream.client.jsonio import Json, encode_optional
from stepstream.client.models import Page, Run, RunStatus, iter_items, iter_pages
from stepstream.client.options import Command, RunOptions
from stepstream.client.pool import ChannelPool
from stepstream.client.streams import follow_run, stream_new_run
from stepstream.v1 import runs_pb2

# Extra seconds of gRPC deadline beyond a wait's own timeout, so the server's
# answer (the run, or DEADLINE_EXCEEDED) arrives before the call is cut.
_WAIT_MARGIN = 5.0

Kinds = Iterable[EventKind | str] | None
# "delete": a stateless run, whose session (made for it) is deleted when it ends.
OnCompletion = Literal["keep", "delete"]
_ON_COMPLETION = {"keep": runs_pb2.ON_COMPLETION_KEEP, "delete": runs_pb2.ON_COMPLETION_DELETE}


def start_request(
    graph_id: str | None,
    input: Json = None,
    *,
    session_id: str | None = None,
    command: Command | None = None,
    options: RunOptions | None = None,
    on_completion: OnCompletion = "keep",
    assistant_id: str | None = None,
    context: Mapping[str, Json] | None = None,
    webhook: str | None = None,
) -> runs_pb2.StartRunRequest:
    return runs_pb2.StartRunRequest(
        graph_id=graph_id or "",
        session_id=session_id or "",
        input_json=encode_optional(input),
        command=command.to_proto() if command else None,
        options=options.to_proto() if options else None,
        on_completion=_ON_COMPLETION[on_completion],
        assistant_id=assistant_id or "",
        context_json=encode_optional(context),
        webhook=webhook or "",
    )


class Runs:
    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool

    async def start(
        self,
        graph_id: str | None = None,
        input: Json = None,
        *,
        session_id: str | None = None,
        command: Command | None = None,
        options: RunOptions | None = None,
        on_completion: OnCompletion = "keep",
        assistant_id: str | None = None,
        context: Mapping[str, Json] | None = None,
        webhook: str | None = None,
    ) -> Run:
        """Queue a run and return it at once.

        Without `session_id` a new session of `graph_id` is created for the
        run; with it, `graph_id` may be left out. With neither input nor
        command, the session continues from its last checkpoint; with
        `command=Command(resume=value)`, it answers the pending interrupt.
        `assistant_id` (instead of `graph_id`; a graph's id means its default
        assistant) runs the assistant's graph with its saved configurable values,
        context and metadata under the run's own. `context` is what the nodes
        read through LangGraph's Runtime, checked against the graph's context_schema.
        `webhook` is POSTed the run, signed, when it ends (docs/webhooks.md).
        """
        request = start_request(
            graph_id,
            input,
            session_id=session_id,
            command=command,
            options=options,
            on_completion=on_completion,
            assistant_id=assistant_id,
            context=context,
            webhook=webhook,
        )
        response: runs_pb2.StartRunResponse = await self._pool.unary(
            "runs", "StartRun", request, idempotent=False
        )
        return Run.from_proto(response.run)

    def stream(
        self,
        graph_id: str | None = None,
        input: Json = None,
        *,
        session_id: str | None = None,
        command: Command | None = None,
        options: RunOptions | None = None,
        kinds: Kinds = None,
        subgraphs: bool = False,
        on_completion: OnCompletion = "keep",
        cancel_on_disconnect: bool = False,
        assistant_id: str | None = None,
        context: Mapping[str, Json] | None = None,
    ) -> AsyncGenerator[RunEvent, None]:
        """Queue a run and yield its events until it ends (`assistant_id`, `context`: as `start`).

        With `cancel_on_disconnect`, closing this stream before the run ends cancels the run;
        otherwise the run goes on and can be joined later.

        If the stream breaks once the run is known, the rest is fetched with
        JoinRun from the last seen seq, on any replica, without loss or repeat.
        """
        request = runs_pb2.StreamRunRequest(
            run=start_request(
                graph_id,
                input,
                session_id=session_id,
                command=command,
                options=options,
                on_completion=on_completion,
                assistant_id=assistant_id,
                context=context,
            ),
            event_kinds=kinds_to_proto(kinds),
            subgraphs=subgraphs,
            cancel_on_disconnect=cancel_on_disconnect,
        )
        return stream_new_run(self._pool, request)

    def join(
        self, run_id: str, after_seq: int = 0, *, kinds: Kinds = None, subgraphs: bool = False
    ) -> AsyncGenerator[RunEvent, None]:
        """Yield a run's events with seq > after_seq, live until it ends.

        On UNAVAILABLE (a replica went away, a network blip) the stream is
        reopened on the next address with the last seen seq, for up to the
        client's `reconnect_timeout` seconds of continuous failure.
        """
        return follow_run(self._pool, run_id, after_seq, kinds_to_proto(kinds), subgraphs)

    async def get(self, run_id: str) -> Run:
        response: runs_pb2.GetRunResponse = await self._pool.unary(
            "runs", "GetRun", runs_pb2.GetRunRequest(run_id=run_id), idempotent=True
        )
        return Run.from_proto(response.run)

    async def list_page(
        self,
        *,
        session_id: str | None = None,
        statuses: Iterable[RunStatus | str] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Run]:
        """One page of runs, newest first, optionally of one session / in some states."""
        request = runs_pb2.ListRunsRequest(
            session_id=session_id or "",
            statuses=[RunStatus(s).to_proto() for s in statuses],
            page_size=page_size,
            page_token=page_token,
        )
        response: runs_pb2.ListRunsResponse = await self._pool.unary(
            "runs", "ListRuns", request, idempotent=True
        )
        return Page(tuple(Run.from_proto(r) for r in response.runs), response.next_page_token)

    def pages(
        self, *, session_id: str | None = None, statuses: Iterable[RunStatus | str] = (), page_size: int = 0
    ) -> AsyncGenerator[Page[Run], None]:
        wanted = tuple(statuses)
        return iter_pages(
            lambda token: self.list_page(
                session_id=session_id, statuses=wanted, page_size=page_size, page_token=token
            )
        )

    def list(
        self,
        *,
        session_id: str | None = None,
        statuses: Iterable[RunStatus | str] = (),
        page_size: int = 0,
        limit: int | None = None,
    ) -> AsyncGenerator[Run, None]:
        """Every run (or the first `limit`), newest first, fetching pages as needed."""
        wanted = tuple(statuses)
        return iter_items(
            lambda token: self.list_page(
                session_id=session_id, statuses=wanted, page_size=page_size, page_token=token
            ),
            limit,
        )

    async def cancel(self, run_id: str, *, rollback: bool = False) -> Run:
        """Cancel a queued or running run; `rollback` also deletes what it wrote."""
        request = runs_pb2.CancelRunRequest(run_id=run_id, rollback=rollback)
        response: runs_pb2.CancelRunResponse = await self._pool.unary(
            "runs", "CancelRun", request, idempotent=True
        )
        return Run.from_proto(response.run)

    async def wait(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Block until the run ends; DeadlineExceededError after `timeout` seconds."""
        request = runs_pb2.WaitRunRequest(run_id=run_id, timeout_seconds=timeout or 0.0)
        deadline = None if timeout is None else timeout + _WAIT_MARGIN
        response: runs_pb2.WaitRunResponse = await self._pool.unary(
            "runs", "WaitRun", request, idempotent=True, timeout=deadline
        )
        return Run.from_proto(response.run)
