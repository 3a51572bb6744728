"""Assistants: a graph with saved, versioned settings (configurable values, context, metadata).

Every tenant has a default assistant of each graph, whose id is derived from the
graph's id as LangGraph's server derives it (`default_assistant_id`, the one
derivation every door uses), and a graph's id is accepted wherever an assistant
id is. Default assistants are created on first use by each tenant with an
INSERT that does nothing when the row exists: tenants are not known in advance
(any API key or token may bring a new one), so creating them at start-up could
only cover the single tenant of a server without authentication, which is done
too. Concurrent creators (replicas starting at once, two first calls of a tenant)
race on the primary key, and the database keeps exactly one row.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
import uuid
from typing import Any

from stepstream.server.core import context as ctx
from stepstream.server.core import records as rec
from stepstream.server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from stepstream.server.core.ids import new_id
from stepstream.server.core.pages import page_size
from stepstream.server.core.ports import AssistantStore
from stepstream.server.core.registry import GraphRegistry

# LangGraph's server names each graph's default assistant uuid5(this namespace, graph id).
ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
ASSISTANT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Tenants whose default assistants this process has made sure of, at most (then it starts over).
MAX_ENSURED_OWNERS = 100_000


@functools.lru_cache(maxsize=1024)  # every run start records it: hash a graph's id once
def default_assistant_id(graph_id: str) -> str:
    """The id of a graph's default assistant: the same on every replica and for every tenant."""
    return str(uuid.uuid5(ASSISTANT_NAMESPACE, graph_id))


@dataclasses.dataclass(frozen=True, kw_only=True)
class AssistantFields:
    """Settings a caller gives an assistant, JSON decoded but not yet checked. On update, an
    empty text or None keeps the live version's value."""

    name: str = ""
    description: str = ""
    config: Any = None
    context: Any = None
    metadata: Any = None


def _object(field: str, value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidArgument(field, f"must be a JSON object, got {type(value).__name__}")
    return value


class AssistantManager:
    def __init__(self, registry: GraphRegistry, store: AssistantStore) -> None:
        self._registry = registry
        self._store = store
        self._ensured: set[str] = set()

    # -- defaults ------------------------------------------------------------------------------
    def _defaults(self, owner: str, now: float) -> list[rec.Assistant]:
        return [
            rec.Assistant(
                assistant_id=default_assistant_id(graph_id),
                owner=owner,
                graph_id=graph_id,
                name=graph_id,
                description="",
                config={},
                context={},
                metadata={"created_by": "system"},
                version=1,
                created_at=now,
                updated_at=now,
                is_default=True,
            )
            for graph_id in self._registry.ids()
        ]

    async def ensure_defaults(self, owner: str) -> None:
        """The owner's default assistant of every graph exists (created once, whoever races)."""
        if owner in self._ensured:
            return
        await self._store.ensure(self._defaults(owner, time.time()))
        if len(self._ensured) >= MAX_ENSURED_OWNERS:
            self._ensured.clear()
        self._ensured.add(owner)

    def resolve_id(self, assistant_id: str) -> str:
        """The stored id an assistant id means: a served graph's id means its default assistant."""
        if assistant_id in self._registry.ids():
            return default_assistant_id(assistant_id)
        return assistant_id

    # -- operations ----------------------------------------------------------------------------
    async def get(self, owner: str, assistant_id: str) -> rec.Assistant:
        if not assistant_id:
            raise InvalidArgument("assistant_id", "is required")
        await self.ensure_defaults(owner)
        return await self._store.get(owner, self.resolve_id(assistant_id))

    async def create(
        self,
        owner: str,
        graph_id: str,
        fields: AssistantFields,
        *,
        assistant_id: str = "",
        if_exists_return: bool = False,
    ) -> rec.Assistant:
        if not graph_id:
            raise InvalidArgument("graph_id", "is required")
        loaded = self._registry.get(graph_id)
        if assistant_id:
            if not ASSISTANT_ID.match(assistant_id):
                raise InvalidArgument("assistant_id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
            if assistant_id in self._registry.ids():
                if not if_exists_return:
                    raise AlreadyExists(f"assistant id {assistant_id!r} names a graph's default assistant")
                return await self.get(owner, assistant_id)
        context = _object("context_json", fields.context)
        ctx.validate(loaded, context, "context_json", partial=True)
        now = time.time()
        assistant = rec.Assistant(
            assistant_id=assistant_id or new_id(),
            owner=owner,
            graph_id=graph_id,
            name=fields.name or graph_id,
            description=fields.description,
            config=_object("config_json", fields.config) or {},
            context=context or {},
            metadata=_object("metadata_json", fields.metadata) or {},
            version=1,
            created_at=now,
            updated_at=now,
        )
        await self.ensure_defaults(owner)
        try:
            await self._store.create(assistant)
        except AlreadyExists:
            if not if_exists_return:
                raise
            return await self._store.get(owner, assistant.assistant_id)
        return assistant

    async def update(self, owner: str, assistant_id: str, fields: AssistantFields) -> rec.Assistant:
        current = await self.get(owner, assistant_id)
        context = _object("context_json", fields.context)
        if context is not None:
            loaded = self._registry.get(current.graph_id)
            ctx.validate(loaded, context, "context_json", partial=True)
        changes = rec.AssistantChanges(
            name=fields.name or None,
            description=fields.description or None,
            config=_object("config_json", fields.config),
            context=context,
            metadata=_object("metadata_json", fields.metadata),
        )
        return await self._store.update(owner, current.assistant_id, changes, time.time())

    async def set_version(self, owner: str, assistant_id: str, version: int) -> rec.Assistant:
        if version < 1:
            raise InvalidArgument("version", "must be 1 or more")
        current = await self.get(owner, assistant_id)
        return await self._store.set_version(owner, current.assistant_id, version, time.time())

    async def versions(
        self, owner: str, assistant_id: str, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]:
        current = await self.get(owner, assistant_id)
        return await self._store.versions(owner, current.assistant_id, page_size(size), token)

    async def delete(self, owner: str, assistant_id: str) -> None:
        current = await self.get(owner, assistant_id)
        if current.is_default:
            raise FailedPrecondition(
                f"assistant {current.assistant_id!r} is graph {current.graph_id!r}'s default and "
                "cannot be deleted; update it, or set an earlier version live"
            )
        if not await self._store.delete(owner, current.assistant_id):
            raise NotFound(f"assistant {assistant_id!r} not found")

    async def search(
        self, owner: str, query: rec.AssistantQuery, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]:
        _object("metadata_json", query.metadata)
        await self.ensure_defaults(owner)
        return await self._store.search(owner, query, page_size(size), token)
