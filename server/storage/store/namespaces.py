"""Namespaces: validation, their text form in the tables, and matching for listings.

A namespace is a non-empty tuple of non-empty string labels without '.' or NUL
(LangGraph's rule). Stored as the labels joined by '.', so the rule is what
keeps `("a.b",)` from addressing `("a", "b")`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    SearchOp,
    validate_op_namespace,
)

SEPARATOR = "."
# The character after SEPARATOR: every namespace under prefix p sorts in [p + ".", p + "/").
_AFTER_SEPARATOR = chr(ord(SEPARATOR) + 1)
WILDCARD = "*"


def validate(op: Op) -> None:
    """Raise InvalidNamespaceError (a ValueError) naming what is wrong with the op's namespace."""
    if not isinstance(op, GetOp | PutOp | SearchOp | ListNamespacesOp):
        raise ValueError(f"unknown store operation: {type(op).__name__}")
    namespace = op.namespace_prefix if isinstance(op, SearchOp) else getattr(op, "namespace", ())
    if not isinstance(namespace, tuple):
        raise InvalidNamespaceError(f"a namespace is a tuple of strings, got {type(namespace).__name__}")
    validate_op_namespace(op)
    if isinstance(op, PutOp | GetOp):
        if not op.namespace:
            raise InvalidNamespaceError("namespace cannot be empty: give at least one label")
        if not isinstance(op.key, str):
            raise ValueError(f"an item's key is a string, got {type(op.key).__name__}")
        if "\x00" in op.key:
            raise ValueError(f"an item's key cannot contain NUL characters: {op.key!r}")
    if isinstance(op, PutOp) and op.namespace[0] == "langgraph":
        raise InvalidNamespaceError(f'the root label "langgraph" is reserved: got {op.namespace}')


def to_text(namespace: Sequence[str]) -> str:
    return SEPARATOR.join(namespace)


def from_text(text: str) -> tuple[str, ...]:
    return tuple(text.split(SEPARATOR))


def prefix_bounds(prefix: Sequence[str]) -> tuple[str, str, str] | None:
    """(exact, low, high) such that a namespace under `prefix` is `exact` or in [low, high)."""
    if not prefix:
        return None
    exact = to_text(prefix)
    return exact, exact + SEPARATOR, exact + _AFTER_SEPARATOR


def literal_prefix(conditions: Iterable[MatchCondition]) -> tuple[str, ...]:
    """The leading labels, before any wildcard, of the first prefix condition (for an index range)."""
    for condition in conditions:
        if condition.match_type == "prefix":
            labels: list[str] = []
            for label in condition.path:
                if label == WILDCARD:
                    break
                labels.append(label)
            return tuple(labels)
    return ()


def matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """Whether `namespace` starts (prefix) or ends (suffix) with the condition's path; '*' is any label."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        part = namespace[: len(path)]
    elif condition.match_type == "suffix":
        part = namespace[len(namespace) - len(path) :]
    else:
        raise ValueError(f"unknown namespace match type {condition.match_type!r}: use 'prefix' or 'suffix'")
    return all(want in (WILDCARD, got) for want, got in zip(path, part, strict=True))


def listing(texts: Iterable[str], op: ListNamespacesOp) -> list[tuple[str, ...]]:
    """The page of namespaces `op` asks for, from the stored namespaces' texts: sorted, deduplicated
    after truncation to max_depth."""
    conditions = op.match_conditions or ()
    found: set[tuple[str, ...]] = set()
    for text in texts:
        namespace = from_text(text)
        if all(matches(c, namespace) for c in conditions):
            found.add(namespace if op.max_depth is None else namespace[: op.max_depth])
    return sorted(found)[op.offset : op.offset + op.limit]
