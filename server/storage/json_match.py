"""Metadata containment in SQL, the same on SQLite and PostgreSQL.

`{"a": 1, "b": {"c": "x"}}` matches a JSON object whose key "a" holds 1 and
whose "b" is an object with "c" equal to "x": every key with an equal value,
nested objects compared the same way (an empty object matches any object),
anything else (numbers, strings, booleans, null, arrays) by equality of JSON
value and type. The filter is split into one condition per leaf path, each a
JSON path lookup both databases evaluate on the stored text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

Path = tuple[str, ...]


def leaves(filter: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, value) of every leaf of `filter`; a non-empty nested object is walked into."""
    for key, value in filter.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield from leaves(value, path)
        else:
            yield path, value


def _json_type(value: Any) -> str:
    """The value's type as SQLite's json_type names it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "text"
    return "object" if isinstance(value, Mapping) else "array"


def contains(
    column: sa.ColumnElement[Any], filter: Mapping[str, Any], dialect: str
) -> sa.ColumnElement[bool]:
    """A condition true where the JSON object in `column` contains `filter`."""
    conditions = [_leaf(column, path, value, dialect) for path, value in leaves(filter)]
    return sa.and_(sa.true(), *conditions)


def _leaf(column: sa.ColumnElement[Any], path: Path, value: Any, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        found = (
            sa.type_coerce(column, sa.Text)
            .cast(postgresql.JSONB)
            .op("#>")(sa.literal(list(path), postgresql.ARRAY(sa.Text)))
        )
        if isinstance(value, Mapping):  # an empty object: any object there
            return sa.func.jsonb_typeof(found) == "object"
        return found == sa.literal(orjson.dumps(value).decode()).cast(postgresql.JSONB)
    # SQLite's JSON1: '$."a"."b"' quotes each key, so any key text is taken literally.
    json_path = "$" + "".join('."' + key.replace('"', '""') + '"' for key in path)
    kind = sa.func.json_type(column, json_path) == _json_type(value)
    if value is None or isinstance(value, bool | Mapping):
        return kind
    if isinstance(value, list):
        same = sa.func.json_extract(column, json_path) == sa.func.json(orjson.dumps(value).decode())
        return sa.and_(kind, same)
    return sa.and_(kind, sa.func.json_extract(column, json_path) == value)
