"""Threads (stepstream sessions): create, get, patch, delete, search, count, state, history."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.core import records as rec
from stepstream.server.core.errors import AlreadyExists, NotFound
from stepstream.server.core.ids import new_id
from stepstream.server.core.jsonio import json_contains
from stepstream.server.http import bodies, shapes
from stepstream.server.http.common import core_of, json, owner_of
from stepstream.server.http.errors import HttpError

# A search by `values` reads threads in batches of this many, and at most this many in all.
VALUES_SCAN_BATCH = 100
VALUES_SCAN_LIMIT = 10_000


def _thread_id(request: Request) -> str:
    return bodies.check_uuid(request.path_params["thread_id"], "thread")


async def _thread_json(request: Request, session: rec.Session) -> dict[str, Any]:
    snapshot = await core_of(request).session_snapshot(owner_of(request), session.session_id)
    values = snapshot.values if snapshot is not None else None
    shown = shapes.thread(session, values, shapes.thread_interrupts(snapshot))
    if shown["status"] == "idle" and snapshot is not None and snapshot.next:
        # LangGraph's server calls a thread with work left at its last checkpoint (a cancelled
        # run, a state updated as a node) interrupted.
        shown["status"] = "interrupted"
    return shown


async def create(request: Request) -> Response:
    body = await bodies.parse(request, bodies.ThreadCreate)
    core, owner = core_of(request), owner_of(request)
    thread_id = bodies.check_uuid(body.thread_id, "thread") if body.thread_id else new_id()
    try:
        session = await core.create_session(
            owner, body.graph_id or "", session_id=thread_id, metadata=body.metadata or {}, bind_later=True
        )
    except AlreadyExists:
        if body.if_exists != "do_nothing":
            raise HttpError(409, f"Thread with ID {thread_id} already exists") from None
        try:
            session = await core.get_session(owner, thread_id)
        except NotFound:  # another tenant's id: ids are one namespace, and this one is taken
            raise HttpError(409, f"Thread with ID {thread_id} already exists") from None
        return json(await _thread_json(request, session))
    return json(shapes.new_thread(session))


async def get(request: Request) -> Response:
    session = await core_of(request).get_session(owner_of(request), _thread_id(request))
    return json(await _thread_json(request, session))


async def patch(request: Request) -> Response:
    body = await bodies.parse(request, bodies.ThreadPatch)
    session = await core_of(request).patch_session(
        owner_of(request), _thread_id(request), body.metadata or {}
    )
    return json(await _thread_json(request, session))


async def delete(request: Request) -> Response:
    # LangGraph's server deletes a busy thread too (its runs are cancelled first).
    await core_of(request).delete_session(owner_of(request), _thread_id(request), force=True)
    return Response(status_code=204)


async def _search(request: Request, body: bodies.ThreadSearch) -> list[dict[str, Any]]:
    query = rec.SessionQuery(
        metadata=body.metadata or {},
        statuses=(shapes.THREAD_STATUS_FILTER[body.status],) if body.status else (),
        session_ids=tuple(body.ids or ()),
        sort=rec.SessionSort.UPDATED_AT if body.sort_by == "updated_at" else rec.SessionSort.CREATED_AT,
        ascending=body.sort_order == "asc",
        limit=body.limit,
        offset=body.offset,
    )
    if body.values:
        found = await _search_by_values(request, query, body.values)
    else:
        sessions = await core_of(request).search_sessions(owner_of(request), query)
        found = [await _thread_json(request, s) for s in sessions]
    if body.select:
        found = [{k: v for k, v in t.items() if k in body.select} for t in found]
    return found


async def _search_by_values(
    request: Request, query: rec.SessionQuery, values: dict[str, Any]
) -> list[dict[str, Any]]:
    """The page of threads whose values contain `values`. Values live in checkpoints, not in the
    sessions' rows, so the database cannot filter on them: walk the metadata/status matches in
    batches, newest first as asked, until the page is full or VALUES_SCAN_LIMIT were read."""
    core, owner = core_of(request), owner_of(request)
    wanted = query.offset + query.limit
    matches: list[dict[str, Any]] = []
    offset = 0
    while len(matches) < wanted and offset < VALUES_SCAN_LIMIT:
        batch = await core.search_sessions(
            owner, dataclasses.replace(query, offset=offset, limit=VALUES_SCAN_BATCH)
        )
        for session in batch:
            thread = await _thread_json(request, session)
            if json_contains(thread["values"], values):
                matches.append(thread)
        if len(batch) < VALUES_SCAN_BATCH:
            break
        offset += VALUES_SCAN_BATCH
    return matches[query.offset : wanted]


async def search(request: Request) -> Response:
    return json(await _search(request, await bodies.parse(request, bodies.ThreadSearch)))


async def count(request: Request) -> Response:
    body = await bodies.parse(request, bodies.ThreadCount)
    search_body = bodies.ThreadSearch(
        metadata=body.metadata, values=body.values, status=body.status, limit=1000
    )
    return json(len(await _search(request, search_body)))


async def state(request: Request) -> Response:
    thread_id = _thread_id(request)
    checkpoint_id = request.path_params.get("checkpoint_id", "")
    snapshot = await core_of(request).session_snapshot(owner_of(request), thread_id, checkpoint_id)
    return json(shapes.state(snapshot, thread_id))


async def state_at(request: Request) -> Response:
    thread_id = _thread_id(request)
    body = await bodies.parse(request, bodies.CheckpointQuery)
    checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id") or ""
    snapshot = await core_of(request).session_snapshot(owner_of(request), thread_id, str(checkpoint_id))
    return json(shapes.state(snapshot, thread_id))


async def update_state(request: Request) -> Response:
    thread_id = _thread_id(request)
    body = await bodies.parse(request, bodies.StateUpdate)
    checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id") or ""
    new_checkpoint = await core_of(request).update_session_state(
        owner_of(request), thread_id, body.values, body.as_node or "", str(checkpoint_id)
    )
    reference = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": new_checkpoint}
    return json({"checkpoint": reference, "configurable": reference, "checkpoint_id": new_checkpoint})


async def history(request: Request) -> Response:
    thread_id = _thread_id(request)
    if request.method == "GET":
        raw: dict[str, Any] = dict(request.query_params)
        try:
            body = bodies.HistoryQuery.model_validate(raw)
        except Exception as exc:
            raise HttpError(422, f"query: {exc}") from None
    else:
        body = await bodies.parse(request, bodies.HistoryQuery)
    before = body.before
    before_id = (
        before.get("configurable", before).get("checkpoint_id", "") if isinstance(before, dict) else before
    )
    snapshots = await core_of(request).session_snapshots(
        owner_of(request), thread_id, body.limit, str(before_id or ""), body.metadata
    )
    return json([shapes.state(s, thread_id) for s in snapshots])


async def copy(request: Request) -> Response:
    session = await core_of(request).copy_session(owner_of(request), _thread_id(request))
    shown = shapes.new_thread(session)
    del shown["values"]  # as LangGraph's server answers a copy
    return json(shown)


ROUTES = [
    Route("/threads", create, methods=["POST"]),
    Route("/threads/search", search, methods=["POST"]),
    Route("/threads/count", count, methods=["POST"]),
    Route("/threads/{thread_id}", get, methods=["GET"]),
    Route("/threads/{thread_id}", patch, methods=["PATCH"]),
    Route("/threads/{thread_id}", delete, methods=["DELETE"]),
    Route("/threads/{thread_id}/copy", copy, methods=["POST"]),
    Route("/threads/{thread_id}/state", state, methods=["GET"]),
    Route("/threads/{thread_id}/state", update_state, methods=["POST"]),
    Route("/threads/{thread_id}/state/checkpoint", state_at, methods=["POST"]),
    Route("/threads/{thread_id}/state/{checkpoint_id}", state, methods=["GET"]),
    Route("/threads/{thread_id}/history", history, methods=["GET", "POST"]),
]
