"""What every handler of the HTTP door needs: the core, the caller's owner, JSON answers, and
the assistant an id names."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stepstream.security.credentials import Principal
from stepstream.server.core.app import Core
from stepstream.server.core.errors import NotFound
from stepstream.server.core.jsonio import dumpb
from stepstream.server.http import shapes
from stepstream.server.http.errors import HttpError


def core_of(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


def owner_of(request: Request) -> str:
    """The tenant the request acts for (AuthMiddleware resolved it)."""
    principal: Principal = request.scope["state"]["principal"]
    return principal.owner


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Graph values hold LangChain messages and other objects: the core's JSON encoding."""
    return Response(dumpb(value), status_code=status, media_type="application/json", headers=headers)


def default_graph(core: Core, assistant_id: str) -> str | None:
    """The graph whose default assistant `assistant_id` names (the graph's id itself, or its
    default assistant's UUID); None for any other id."""
    graphs = [g.spec.graph_id for g in core.graphs()]
    if assistant_id in graphs:
        return assistant_id
    for graph_id in graphs:
        if shapes.assistant_id(graph_id) == assistant_id:
            return graph_id
    return None


def graph_of(core: Core, assistant_id: str) -> str:
    """The graph an assistant id names: a graph id itself, or its default assistant's UUID.
    An unknown name is a 422 (LangGraph's answer), an unknown UUID a 404."""
    if (graph_id := default_graph(core, assistant_id)) is not None:
        return graph_id
    graphs = [g.spec.graph_id for g in core.graphs()]
    try:
        uuid.UUID(assistant_id)
    except ValueError:
        known = ", ".join(graphs) or "none"
        raise HttpError(
            422,
            f"Invalid assistant: {assistant_id!r}. Must be either a valid assistant UUID or one of "
            f"the registered graphs: {known}",
        ) from None
    raise NotFound(f"assistant {assistant_id!r} not found")


async def session_of(request: Request, thread_id: str) -> Any:
    """The caller's session `thread_id` (NotFound for another owner's, or none)."""
    return await core_of(request).get_session(owner_of(request), thread_id)
