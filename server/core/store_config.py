"""The `store` section of a graph config (stepstream.json or langgraph.json), as LangGraph's reads it.

    {"store": {"index": {"dims": 1536, "embed": "openai:text-embedding-3-small", "fields": ["$"]},
               "ttl": {"default_ttl": 1440, "refresh_on_read": true, "sweep_interval_minutes": 60}}}

Every graph gets the server's store (nodes reach it as `runtime.store` or a
`store: BaseStore` parameter), scoped to the tenant of the run. A graph entry
may opt out with `"store": false`: its runs then see the store the graph was
compiled with, if any, and nothing of the server's.

What the server cannot honour is refused here, naming file, key and reason:
unknown keys (LangGraph's `"path"` of a custom store class, for one: the store
lives on the server's own database), and values of the wrong type or range.
Whether `index.embed` names something loadable is known only when the store
opens (the server's start-up), which refuses it with the same naming; a
"./file.py:attr" embed is relative to the config file, like graph paths.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Mapping
from typing import Any

INDEX_KEYS = ("dims", "embed", "fields")
# LangGraph's TTLConfig; omit_expired is the library's, honoured too.
TTL_KEYS = ("default_ttl", "refresh_on_read", "sweep_interval_minutes", "omit_expired")
SECTION_KEYS = ("index", "ttl")
_WHY_NOT = {
    "path": "a custom store implementation is not supported: the store lives on the server's database",
}


class StoreConfigError(ValueError):
    """A store section that cannot be served; `key` is its dotted path in the file."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f'key "{key}": {reason}')
        self.key = key
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class StoreSection:
    """A checked `store` section; `source` is the file it came from ("" when none)."""

    index: Mapping[str, Any] | None = None
    ttl: Mapping[str, Any] | None = None
    source: str = ""

    def as_langgraph(self) -> dict[str, Any]:
        """{"index": IndexConfig, "ttl": TTLConfig}, the keys present only when configured."""
        section: dict[str, Any] = {}
        if self.index:
            section["index"] = dict(self.index)
        if self.ttl:
            section["ttl"] = dict(self.ttl)
        return section


def _unknown(where: str, raw: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in raw:
        if key not in known:
            reason = _WHY_NOT.get(key) or f"unknown key; {where} takes {', '.join(known)}"
            raise StoreConfigError(f"{where}.{key}", reason)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _embed_path(embed: str, source: str | pathlib.Path) -> str:
    """A "./file.py:attr" embed relative to the config file, as graph paths are."""
    target, _, attr = embed.rpartition(":")
    if not source or not target.endswith(".py") or pathlib.Path(target).is_absolute():
        return embed
    return f"{(pathlib.Path(source).parent / target).resolve()}:{attr}"


def _index(raw: Any, source: str | pathlib.Path) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise StoreConfigError("store.index", 'must be an object {"dims", "embed", "fields"}')
    _unknown("store.index", raw, INDEX_KEYS)
    dims = raw.get("dims")
    if not isinstance(dims, int) or isinstance(dims, bool) or dims <= 0:
        raise StoreConfigError("store.index.dims", f"must be a positive whole number, got {dims!r}")
    embed = raw.get("embed")
    if not isinstance(embed, str) or not embed.strip():
        raise StoreConfigError(
            "store.index.embed",
            'must name the embedding function: "module:attr", "./file.py:attr", "local:/model/dir" '
            'or a provider string such as "openai:text-embedding-3-small"',
        )
    fields = raw.get("fields", ["$"])
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        reason = f'must be a list of JSON paths such as ["$"], got {fields!r}'
        raise StoreConfigError("store.index.fields", reason)
    return {"dims": dims, "embed": _embed_path(embed, source), "fields": list(fields)}


def _ttl(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise StoreConfigError("store.ttl", 'must be an object {"default_ttl", "refresh_on_read", ...}')
    _unknown("store.ttl", raw, TTL_KEYS)
    ttl: dict[str, Any] = {}
    for key in ("default_ttl", "sweep_interval_minutes"):
        value = raw.get(key)
        if value is None:
            continue
        if not _number(value) or value <= 0:
            raise StoreConfigError(f"store.ttl.{key}", f"must be a positive number of minutes, got {value!r}")
        ttl[key] = value
    for key in ("refresh_on_read", "omit_expired"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise StoreConfigError(f"store.ttl.{key}", f"must be true or false, got {raw[key]!r}")
            ttl[key] = raw[key]
    return ttl


def parse_store_section(raw: Any, source: str | pathlib.Path = "") -> StoreSection:
    """The checked section; StoreConfigError naming the key and reason otherwise."""
    if raw is None:
        return StoreSection(source=str(source))
    if not isinstance(raw, Mapping):
        raise StoreConfigError("store", 'must be an object {"index": {...}, "ttl": {...}}')
    _unknown("store", raw, SECTION_KEYS)
    return StoreSection(_index(raw.get("index"), source), _ttl(raw.get("ttl")), str(source))


def graph_uses_store(graph_id: str, entry: Mapping[str, Any]) -> bool:
    """A graph entry's `"store"`: true (the default) or false (opt out of the server's store)."""
    value = entry.get("store", True)
    if not isinstance(value, bool):
        raise StoreConfigError(
            f"graphs.{graph_id}.store",
            f"must be true (the server's store, the default) or false (none), got {value!r}",
        )
    return value
