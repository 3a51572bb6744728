"""Verbs of this part of the `stepstream` command (being built)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """No verbs yet."""
