"""AssistantService: graphs with saved, versioned settings (configurable values, context, metadata).

A graph's id is accepted wherever an assistant id is, and means the graph's
default assistant (Graph.default_assistant_id).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from stepstream.client.jsonio import Json, encode_optional
from stepstream.client.models import Assistant, Page, iter_items
from stepstream.client.pool import ChannelPool
from stepstream.v1 import assistants_pb2

Settings = Mapping[str, Json] | None


class Assistants:
    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool

    async def create(
        self,
        graph_id: str,
        *,
        assistant_id: str | None = None,
        name: str | None = None,
        description: str | None = None,
        config: Settings = None,
        context: Settings = None,
        metadata: Settings = None,
        if_exists_return: bool = False,
    ) -> Assistant:
        """Create an assistant of `graph_id` (version 1). `config` holds `configurable` values;
        `assistant_id` picks its id (ALREADY_EXISTS when taken, unless `if_exists_return`)."""
        request = assistants_pb2.CreateAssistantRequest(
            graph_id=graph_id,
            assistant_id=assistant_id or "",
            name=name or "",
            description=description or "",
            config_json=encode_optional(config),
            context_json=encode_optional(context),
            metadata_json=encode_optional(metadata),
            if_exists_return=if_exists_return,
        )
        response: assistants_pb2.CreateAssistantResponse = await self._pool.unary(
            "assistants", "CreateAssistant", request, idempotent=False
        )
        return Assistant.from_proto(response.assistant)

    async def get(self, assistant_id: str) -> Assistant:
        """The assistant with its live version's settings."""
        request = assistants_pb2.GetAssistantRequest(assistant_id=assistant_id)
        response: assistants_pb2.GetAssistantResponse = await self._pool.unary(
            "assistants", "GetAssistant", request, idempotent=True
        )
        return Assistant.from_proto(response.assistant)

    async def update(
        self,
        assistant_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        config: Settings = None,
        context: Settings = None,
        metadata: Settings = None,
    ) -> Assistant:
        """Save a new version (what is left out keeps the live version's value) and make it live."""
        request = assistants_pb2.UpdateAssistantRequest(
            assistant_id=assistant_id,
            name=name or "",
            description=description or "",
            config_json=encode_optional(config),
            context_json=encode_optional(context),
            metadata_json=encode_optional(metadata),
        )
        response: assistants_pb2.UpdateAssistantResponse = await self._pool.unary(
            "assistants", "UpdateAssistant", request, idempotent=False
        )
        return Assistant.from_proto(response.assistant)

    async def set_version(self, assistant_id: str, version: int) -> Assistant:
        """Make a saved version the live one."""
        request = assistants_pb2.SetAssistantVersionRequest(assistant_id=assistant_id, version=version)
        response: assistants_pb2.SetAssistantVersionResponse = await self._pool.unary(
            "assistants", "SetAssistantVersion", request, idempotent=True
        )
        return Assistant.from_proto(response.assistant)

    async def versions_page(
        self, assistant_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> Page[Assistant]:
        request = assistants_pb2.ListAssistantVersionsRequest(
            assistant_id=assistant_id, page_size=page_size, page_token=page_token
        )
        response: assistants_pb2.ListAssistantVersionsResponse = await self._pool.unary(
            "assistants", "ListAssistantVersions", request, idempotent=True
        )
        return Page(tuple(Assistant.from_proto(a) for a in response.versions), response.next_page_token)

    def versions(
        self, assistant_id: str, *, page_size: int = 0, limit: int | None = None
    ) -> AsyncGenerator[Assistant, None]:
        """Every saved version, newest first, fetching pages as needed."""
        return iter_items(
            lambda token: self.versions_page(assistant_id, page_size=page_size, page_token=token), limit
        )

    async def delete(self, assistant_id: str) -> None:
        """Delete an assistant and its versions (a graph's default assistant cannot be)."""
        request = assistants_pb2.DeleteAssistantRequest(assistant_id=assistant_id)
        await self._pool.unary("assistants", "DeleteAssistant", request, idempotent=False)

    async def search_page(
        self,
        *,
        graph_id: str | None = None,
        metadata: Settings = None,
        name: str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Assistant]:
        """One page of assistants, newest first: of `graph_id`, whose metadata contains
        `metadata`, whose name contains `name` (each when given)."""
        request = assistants_pb2.SearchAssistantsRequest(
            graph_id=graph_id or "",
            metadata_json=encode_optional(metadata),
            name=name or "",
            page_size=page_size,
            page_token=page_token,
        )
        response: assistants_pb2.SearchAssistantsResponse = await self._pool.unary(
            "assistants", "SearchAssistants", request, idempotent=True
        )
        return Page(tuple(Assistant.from_proto(a) for a in response.assistants), response.next_page_token)

    def search(
        self,
        *,
        graph_id: str | None = None,
        metadata: Settings = None,
        name: str | None = None,
        page_size: int = 0,
        limit: int | None = None,
    ) -> AsyncGenerator[Assistant, None]:
        """Every matching assistant (or the first `limit`), newest first, fetching pages as needed."""
        return iter_items(
            lambda token: self.search_page(
                graph_id=graph_id, metadata=metadata, name=name, page_size=page_size, page_token=token
            ),
            limit,
        )
