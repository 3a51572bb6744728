"""Assistants and their versions in the database: the core's `AssistantStore` port (core/ports.py).

Every statement names the owner: a tenant reads and changes its own assistants only.
Writes are few and each is one short transaction of its own; where two callers
may race (two updates, two replicas creating a graph's default assistant), one
statement settles it in the database: an UPDATE that takes the next version
number from the row it locks, an INSERT that does nothing when the key exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.core import records as rec
from stepstream.server.core.errors import AlreadyExists, NotFound
from stepstream.server.core.pages import decode_page_token, encode_page_token
from stepstream.server.storage.json_match import contains
from stepstream.server.storage.reads import Reader
from stepstream.server.storage.records import is_unique_violation
from stepstream.server.storage.schema import assistant_versions, assistants

_SETTINGS = ("name", "description", "config_json", "context_json", "metadata_json")


def _dump(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _settings(assistant: rec.Assistant) -> dict[str, Any]:
    return {
        "name": assistant.name,
        "description": assistant.description,
        "config_json": _dump(assistant.config),
        "context_json": _dump(assistant.context),
        "metadata_json": _dump(assistant.metadata),
    }


def _row(assistant: rec.Assistant) -> dict[str, Any]:
    return {
        "owner": assistant.owner,
        "assistant_id": assistant.assistant_id,
        "graph_id": assistant.graph_id,
        "is_default": assistant.is_default,
        "version": assistant.version,
        "latest_version": assistant.version,
        **_settings(assistant),
        "created_at": assistant.created_at,
        "updated_at": assistant.updated_at,
    }


def _version_row(assistant: rec.Assistant) -> dict[str, Any]:
    return {
        "owner": assistant.owner,
        "assistant_id": assistant.assistant_id,
        "version": assistant.version,
        "graph_id": assistant.graph_id,
        **_settings(assistant),
        "created_at": assistant.updated_at,
    }


def assistant_from_row(row: Mapping[str, Any] | sa.RowMapping) -> rec.Assistant:
    return rec.Assistant(
        assistant_id=row["assistant_id"],
        owner=row["owner"],
        graph_id=row["graph_id"],
        name=row["name"],
        description=row["description"],
        config=orjson.loads(row["config_json"] or "{}"),
        context=orjson.loads(row["context_json"] or "{}"),
        metadata=orjson.loads(row["metadata_json"] or "{}"),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        is_default=bool(row["is_default"]),
    )


def _key(owner: str, assistant_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(assistants.c.owner == owner, assistants.c.assistant_id == assistant_id)


def _not_found(assistant_id: str) -> NotFound:
    return NotFound(f"assistant {assistant_id!r} not found")


class AssistantStore:
    def __init__(self, engine: AsyncEngine, reader: Reader) -> None:
        self.engine = engine
        self.reader = reader
        self._dialect = engine.dialect.name

    def _insert_ignoring_existing(self, table: sa.Table) -> sa.Insert:
        """INSERT ... ON CONFLICT DO NOTHING: of concurrent inserts of one key, one lands."""
        if self._dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    async def ensure(self, defaults: Sequence[rec.Assistant]) -> None:
        """Create each of these assistants unless it exists (a graph's default assistant)."""
        if not defaults:
            return
        async with self.engine.begin() as conn:
            await conn.execute(self._insert_ignoring_existing(assistants), [_row(a) for a in defaults])
            versions = self._insert_ignoring_existing(assistant_versions)
            await conn.execute(versions, [_version_row(a) for a in defaults])

    async def create(self, assistant: rec.Assistant) -> None:
        """Store a new assistant with its first version; AlreadyExists when the id is taken."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(assistants.insert(), _row(assistant))
                await conn.execute(assistant_versions.insert(), _version_row(assistant))
        except sa.exc.DBAPIError as exc:
            if is_unique_violation(exc):
                raise AlreadyExists(f"assistant {assistant.assistant_id!r} already exists") from None
            raise

    async def get(self, owner: str, assistant_id: str) -> rec.Assistant:
        query = sa.select(assistants).where(_key(owner, assistant_id))
        found = await self.reader.run(lambda conn: conn.execute(query).mappings().first())
        if found is None:
            raise _not_found(assistant_id)
        return assistant_from_row(found)

    async def update(
        self, owner: str, assistant_id: str, changes: rec.AssistantChanges, now: float
    ) -> rec.Assistant:
        """Save a new version (newest + 1) from the live one and `changes`, and make it live."""
        values: dict[str, Any] = {
            "version": assistants.c.latest_version + 1,
            "latest_version": assistants.c.latest_version + 1,
            "updated_at": now,
        }
        for field in ("name", "description"):
            if (text := getattr(changes, field)) is not None:
                values[field] = text
        for field in ("config", "context", "metadata"):
            if (mapping := getattr(changes, field)) is not None:
                values[f"{field}_json"] = _dump(mapping)
        # The UPDATE comes first: it locks the row, so concurrent updates take turns and each
        # numbers its version from what the one before left.
        statement = (
            assistants.update().where(_key(owner, assistant_id)).values(values).returning(*assistants.c)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().first()
            if row is None:
                raise _not_found(assistant_id)
            updated = assistant_from_row(row)
            await conn.execute(assistant_versions.insert(), _version_row(updated))
        return updated

    async def set_version(self, owner: str, assistant_id: str, version: int, now: float) -> rec.Assistant:
        """Make a saved version the live one (versions never change, so it is read first)."""
        query = sa.select(assistant_versions).where(
            assistant_versions.c.owner == owner,
            assistant_versions.c.assistant_id == assistant_id,
            assistant_versions.c.version == version,
        )
        saved = await self.reader.run(lambda conn: conn.execute(query).mappings().first())
        if saved is None:
            await self.get(owner, assistant_id)  # NotFound for the assistant itself first
            raise NotFound(f"assistant {assistant_id!r} has no version {version}")
        values = {name: saved[name] for name in _SETTINGS}
        statement = (
            assistants.update()
            .where(_key(owner, assistant_id))
            .values(version=version, updated_at=now, **values)
            .returning(*assistants.c)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().first()
        if row is None:
            raise _not_found(assistant_id)
        return assistant_from_row(row)

    async def versions(
        self, owner: str, assistant_id: str, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]:
        """Newest version first, each as the assistant is with it live."""
        current = await self.get(owner, assistant_id)
        query = sa.select(assistant_versions).where(
            assistant_versions.c.owner == owner, assistant_versions.c.assistant_id == assistant_id
        )
        if token:
            below, _ = decode_page_token(token)
            query = query.where(assistant_versions.c.version < int(below))
        query = query.order_by(assistant_versions.c.version.desc()).limit(size + 1)

        def build(row: sa.RowMapping) -> rec.Assistant:
            return assistant_from_row(
                {
                    **row,
                    "is_default": current.is_default,
                    "created_at": current.created_at,
                    "updated_at": row["created_at"],
                }
            )

        items = await self.reader.run(lambda conn: [build(r) for r in conn.execute(query).mappings()])
        if len(items) <= size:
            return items, ""
        return items[:size], encode_page_token(items[size - 1].version, assistant_id)

    async def delete(self, owner: str, assistant_id: str) -> bool:
        """Delete an assistant that is not a graph's default, with its versions; whether it was."""
        async with self.engine.begin() as conn:
            deleted = await conn.execute(
                assistants.delete().where(_key(owner, assistant_id), assistants.c.is_default == sa.false())
            )
            if not deleted.rowcount:
                return False
            await conn.execute(
                assistant_versions.delete().where(
                    assistant_versions.c.owner == owner, assistant_versions.c.assistant_id == assistant_id
                )
            )
        return True

    async def search(
        self, owner: str, query: rec.AssistantQuery, size: int, token: str
    ) -> tuple[list[rec.Assistant], str]:
        """Newest first, keyset-paged on (creation time, id)."""
        select = sa.select(assistants).where(assistants.c.owner == owner)
        if query.graph_id:
            select = select.where(assistants.c.graph_id == query.graph_id)
        if query.name:
            pattern = "%" + query.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            select = select.where(assistants.c.name.like(pattern, escape="\\"))
        if query.metadata:
            select = select.where(contains(assistants.c.metadata_json, query.metadata, self._dialect))
        key = (assistants.c.created_at, assistants.c.assistant_id)
        if token:
            select = select.where(sa.tuple_(*key) < tuple(decode_page_token(token)))
        select = select.order_by(key[0].desc(), key[1].desc()).limit(size + 1)
        items = await self.reader.run(_all(select, assistant_from_row))
        if len(items) <= size:
            return items, ""
        last = items[size - 1]
        return items[:size], encode_page_token(last.created_at, last.assistant_id)


def _all(
    query: sa.Executable, build: Callable[[sa.RowMapping], rec.Assistant]
) -> Callable[[sa.Connection], list[rec.Assistant]]:
    return lambda conn: [build(row) for row in conn.execute(query).mappings()]
