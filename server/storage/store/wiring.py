"""How a server holds the store: built from the config's `store` section, its sweeper started
with the server and stopped with it (like the session retention task in core/app.py).

The server calls `open_store` in its start-up and `close_store` in its shutdown; nothing else of
the store's life belongs to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from stepstream.server.storage.store.store import SQLStore

# The keys of LangGraph's `store` section this store honours.
KNOWN_KEYS = frozenset({"index", "ttl"})


def store_from_config(engine: AsyncEngine, section: Mapping[str, Any] | None) -> SQLStore:
    """A store on `engine` from a config's `store` section ({"index": IndexConfig, "ttl": TTLConfig})."""
    section = section or {}
    unknown = sorted(set(section) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"store: unknown key {unknown[0]!r}; the store section takes {sorted(KNOWN_KEYS)}")
    return SQLStore(engine, index=section.get("index"), ttl=section.get("ttl"))


async def open_store(engine: AsyncEngine, section: Mapping[str, Any] | None) -> SQLStore:
    """The server's store, its TTL sweeper running when TTLs are configured (call on the server's loop)."""
    store = store_from_config(engine, section)
    if store.ttl_config:
        store.start_ttl_sweeper()
    return store


async def close_store(store: SQLStore) -> None:
    await store.stop_ttl_sweeper()
