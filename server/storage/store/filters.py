"""Search filters, with the meaning LangGraph's stores give them.

`{"field": value}` matches an item whose value has that field equal to
`value`; a nested mapping without operators matches field by field, a list
element by element. A mapping of operators compares: `$eq`, `$ne`, and
`$gt`/`$gte`/`$lt`/`$lte`, which order numbers numerically and strings as
text; a field that is missing or of another type never satisfies an ordering.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
OPERATORS = frozenset({"$eq", "$ne", *_ORDERINGS})


def check(filter: Mapping[str, Any] | None) -> None:
    """Raise ValueError for an unknown operator, before anything is read."""
    if filter is None:
        return
    if not isinstance(filter, Mapping):
        raise ValueError(f"a search filter is a mapping of field to condition, got {type(filter).__name__}")
    for field, condition in filter.items():
        if isinstance(condition, Mapping):
            unknown = [
                k for k in condition if isinstance(k, str) and k.startswith("$") and k not in OPERATORS
            ]
            if unknown:
                raise ValueError(
                    f"unknown filter operator {unknown[0]!r} on field {field!r}: "
                    f"use one of {', '.join(sorted(OPERATORS))}"
                )
            check({k: v for k, v in condition.items() if not str(k).startswith("$")})


def matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    if not filter:
        return True
    return all(_satisfies(value.get(field), condition) for field, condition in filter.items())


def _satisfies(actual: Any, condition: Any) -> bool:
    if isinstance(condition, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in condition):
            return all(_compare(actual, op, arg) for op, arg in condition.items())
        return isinstance(actual, Mapping) and all(_satisfies(actual.get(k), v) for k, v in condition.items())
    if isinstance(condition, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(condition)
            and all(_satisfies(a, c) for a, c in zip(actual, condition, strict=True))
        )
    return bool(actual == condition)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _compare(actual: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(actual == arg)
    if op == "$ne":
        return bool(actual != arg)
    ordering = _ORDERINGS.get(op)
    if ordering is None:
        raise ValueError(f"unknown filter operator {op!r}: use one of {', '.join(sorted(OPERATORS))}")
    if (_is_number(actual) and _is_number(arg)) or (isinstance(actual, str) and isinstance(arg, str)):
        return ordering(actual, arg)
    return False
