"""SessionService (unary part): sessions are LangGraph threads."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Literal

from stepstream.client.jsonio import Json, encode, encode_optional
from stepstream.client.models import Page, Session, SessionState, SessionStatus, iter_items, iter_pages
from stepstream.client.pool import ChannelPool
from stepstream.v1 import sessions_pb2

SortBy = Literal["created_at", "updated_at"]
_SORT_BY = {
    "created_at": sessions_pb2.SESSION_SORT_BY_CREATED_AT,
    "updated_at": sessions_pb2.SESSION_SORT_BY_UPDATED_AT,
}


def _status_proto(status: SessionStatus | str) -> sessions_pb2.SessionStatus.ValueType:
    return sessions_pb2.SessionStatus.Value(f"SESSION_STATUS_{SessionStatus(status).name}")


class Sessions:
    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool

    async def create(
        self, graph_id: str, *, session_id: str | None = None, metadata: Mapping[str, Json] | None = None
    ) -> Session:
        """Create a session; `session_id` picks its id (ALREADY_EXISTS when taken)."""
        request = sessions_pb2.CreateSessionRequest(
            graph_id=graph_id, session_id=session_id or "", metadata_json=encode_optional(metadata)
        )
        response: sessions_pb2.CreateSessionResponse = await self._pool.unary(
            "sessions", "CreateSession", request, idempotent=False
        )
        return Session.from_proto(response.session)

    async def get(self, session_id: str) -> Session:
        request = sessions_pb2.GetSessionRequest(session_id=session_id)
        response: sessions_pb2.GetSessionResponse = await self._pool.unary(
            "sessions", "GetSession", request, idempotent=True
        )
        return Session.from_proto(response.session)

    async def list_page(
        self,
        *,
        graph_id: str | None = None,
        metadata: Mapping[str, Json] | None = None,
        statuses: Iterable[SessionStatus | str] = (),
        sort_by: SortBy = "created_at",
        ascending: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Session]:
        """One page, newest first unless `ascending`; page_size 0 means the server's default (50).

        Filters, each when given: sessions of `graph_id`, whose metadata contains `metadata`
        (every key with an equal value, nested objects compared the same way), in `statuses`.
        """
        request = sessions_pb2.ListSessionsRequest(
            page_size=page_size,
            page_token=page_token,
            graph_id=graph_id or "",
            metadata_json=encode_optional(metadata),
            statuses=[_status_proto(s) for s in statuses],
            sort_by=_SORT_BY[sort_by],
            ascending=ascending,
        )
        response: sessions_pb2.ListSessionsResponse = await self._pool.unary(
            "sessions", "ListSessions", request, idempotent=True
        )
        return Page(tuple(Session.from_proto(s) for s in response.sessions), response.next_page_token)

    def pages(
        self,
        *,
        graph_id: str | None = None,
        metadata: Mapping[str, Json] | None = None,
        statuses: Iterable[SessionStatus | str] = (),
        sort_by: SortBy = "created_at",
        ascending: bool = False,
        page_size: int = 0,
    ) -> AsyncGenerator[Page[Session], None]:
        wanted = tuple(statuses)
        return iter_pages(
            lambda token: self.list_page(
                graph_id=graph_id,
                metadata=metadata,
                statuses=wanted,
                sort_by=sort_by,
                ascending=ascending,
                page_size=page_size,
                page_token=token,
            )
        )

    def list(
        self,
        *,
        graph_id: str | None = None,
        metadata: Mapping[str, Json] | None = None,
        statuses: Iterable[SessionStatus | str] = (),
        sort_by: SortBy = "created_at",
        ascending: bool = False,
        page_size: int = 0,
        limit: int | None = None,
    ) -> AsyncGenerator[Session, None]:
        """Every matching session (or the first `limit`), fetching pages as needed."""
        wanted = tuple(statuses)
        return iter_items(
            lambda token: self.list_page(
                graph_id=graph_id,
                metadata=metadata,
                statuses=wanted,
                sort_by=sort_by,
                ascending=ascending,
                page_size=page_size,
                page_token=token,
            ),
            limit,
        )

    async def patch(self, session_id: str, metadata: Mapping[str, Json]) -> Session:
        """Merge `metadata` into the session's, key by key; a None value removes its key."""
        request = sessions_pb2.PatchSessionRequest(session_id=session_id, metadata_json=encode(metadata))
        response: sessions_pb2.PatchSessionResponse = await self._pool.unary(
            "sessions", "PatchSession", request, idempotent=True
        )
        return Session.from_proto(response.session)

    async def copy(self, session_id: str, *, new_session_id: str | None = None) -> Session:
        """A new session with this one's checkpoints and metadata; the two go on independently.
        FAILED_PRECONDITION while the session has an active run."""
        request = sessions_pb2.CopySessionRequest(session_id=session_id, new_session_id=new_session_id or "")
        response: sessions_pb2.CopySessionResponse = await self._pool.unary(
            "sessions", "CopySession", request, idempotent=False
        )
        return Session.from_proto(response.session)

    async def delete(self, session_id: str, *, force: bool = False) -> None:
        """Delete a session with its runs, events and checkpoints; `force` cancels an active run."""
        request = sessions_pb2.DeleteSessionRequest(session_id=session_id, force=force)
        await self._pool.unary("sessions", "DeleteSession", request, idempotent=False)

    async def state(self, session_id: str, *, checkpoint_id: str | None = None) -> SessionState:
        """The latest state, or the state at `checkpoint_id`."""
        request = sessions_pb2.GetSessionStateRequest(
            session_id=session_id, checkpoint_id=checkpoint_id or ""
        )
        response: sessions_pb2.GetSessionStateResponse = await self._pool.unary(
            "sessions", "GetSessionState", request, idempotent=True
        )
        return SessionState.from_proto(response.state)

    async def history_page(
        self, session_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> Page[SessionState]:
        request = sessions_pb2.GetSessionHistoryRequest(
            session_id=session_id, page_size=page_size, page_token=page_token
        )
        response: sessions_pb2.GetSessionHistoryResponse = await self._pool.unary(
            "sessions", "GetSessionHistory", request, idempotent=True
        )
        return Page(tuple(SessionState.from_proto(s) for s in response.states), response.next_page_token)

    def history(
        self, session_id: str, *, page_size: int = 0, limit: int | None = None
    ) -> AsyncGenerator[SessionState, None]:
        """Checkpoints newest first, fetching pages as needed."""
        return iter_items(
            lambda token: self.history_page(session_id, page_size=page_size, page_token=token), limit
        )

    async def update_state(
        self,
        session_id: str,
        values: Mapping[str, Json],
        *,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
    ) -> str:
        """Write values as if `as_node` had; from `checkpoint_id`, fork. Returns the new checkpoint id."""
        request = update_state_request(session_id, values, as_node=as_node, checkpoint_id=checkpoint_id)
        response: sessions_pb2.UpdateSessionStateResponse = await self._pool.unary(
            "sessions", "UpdateSessionState", request, idempotent=False
        )
        return response.checkpoint_id


def update_state_request(
    session_id: str, values: Mapping[str, Json], *, as_node: str | None, checkpoint_id: str | None
) -> sessions_pb2.UpdateSessionStateRequest:
    return sessions_pb2.UpdateSessionStateRequest(
        session_id=session_id,
        values_json=encode(values),
        as_node=as_node or "",
        checkpoint_id=checkpoint_id or "",
    )
