"""Writes sent straight to the SQLite driver: each statement compiled once, rows as tuples.

Through `Connection.execute`, SQLAlchemy spends more per call on parameter
processing and bookkeeping than SQLite spends on the insert. The group-commit
writer sends a dozen statements per run; sequentially, that was about a fifth
of a run's CPU. The writer therefore compiles each (statement, parameter
names) pair once, and gives the rows to the cursor's `executemany` as tuples,
on the same connection and in the same transaction.

Only plain statements take this path: every parameter is passed as it is
(text, numbers, bytes, None; sqlite3 takes them all, the same as SQLAlchemy's
processors for the schema's Float and LargeBinary columns would give it), and
none is an expanding IN list. Anything else returns None here and goes
through SQLAlchemy as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

# Compiled statements kept at most (a few dozen in use).
MAX_CACHED = 1_024


class PlainStatement:
    __slots__ = ("fixed", "names", "sql")

    def __init__(self, sql: str, names: tuple[str, ...], fixed: Mapping[str, Any]) -> None:
        self.sql = sql
        # Positional parameter names, and the values the statement itself binds.
        self.names = names
        self.fixed = fixed

    def row(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        fixed = self.fixed
        return tuple(params[n] if n in params else fixed[n] for n in self.names)


class PlainStatements:
    """Compiled plain statements of one dialect, by statement and parameter names."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._cache: dict[tuple[int, tuple[str, ...]], tuple[Executable, PlainStatement | None]] = {}

    def get(self, statement: Executable, keys: tuple[str, ...]) -> PlainStatement | None:
        """The statement compiled for rows with `keys`, or None if it must go through SQLAlchemy."""
        cached = self._cache.get((id(statement), keys))
        # The statement is kept in the entry, so its id cannot be reused by another object.
        if cached is not None and cached[0] is statement:
            return cached[1]
        plain = self._compile(statement, keys)
        if len(self._cache) >= MAX_CACHED:
            # The writer's statements are module constants; a caller building them per write
            # must not make this grow without end (each entry holds its statement).
            self._cache.clear()
        self._cache[(id(statement), keys)] = (statement, plain)
        return plain

    def _compile(self, statement: Executable, keys: tuple[str, ...]) -> PlainStatement | None:
        if not isinstance(statement, sa.sql.ClauseElement):
            return None
        compiled = statement.compile(dialect=self._dialect, column_keys=list(keys))
        if not isinstance(compiled, SQLCompiler):
            return None
        names = tuple(compiled.positiontup or ())
        if not names and compiled.binds:
            return None  # not a positional dialect
        fixed = compiled.params
        for name in names:
            bind = compiled.binds[name]
            if bind.expanding or (name not in keys and (bind.required or bind.callable is not None)):
                return None
            processor = bind.type._cached_bind_processor(self._dialect)
            # sqlite3 takes bytes as they are, and a REAL column stores an int as a float.
            if processor is not None and not isinstance(bind.type, (sa.LargeBinary, sa.Float)):
                return None
        return PlainStatement(str(compiled), names, fixed)
