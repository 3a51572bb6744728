"""A typer command whose options are the fields of a settings model (cli/settings.py).

Each field becomes one option named by its flags, with the field's docstring as help
and its default and variable shown beside it. Every option defaults to None, "not
given", so that only the flags typed on the command line override the environment.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo

from stepstream.cli.settings import Settings, default_text, describe, env_var, flag_names, inverted


def _option_type(field: FieldInfo, invert: bool) -> Any:
    """The type typer parses the flag as: the field's, without None; a list for a mapping."""
    annotation = field.annotation
    if invert:
        return bool
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) in (Mapping, dict) or annotation is dict:
        return list[str]  # repeated KEY=VALUE, parsed by the field's validator
    return annotation


def options(model: type[Settings]) -> list[inspect.Parameter]:
    """One keyword parameter per field of `model`, each a typer option defaulting to None."""
    params = []
    for name, field in model.model_fields.items():
        invert = inverted(model, name)
        default = default_text(model, name)
        shown = "required" if default is None else f"default: {default}"
        help_text = f"{describe(model, name)} ({shown}; env: {env_var(model, name)})"
        option = typer.Option(*flag_names(model, name), help=help_text, show_default=False)
        annotation = Annotated[_option_type(field, invert) | None, option]  # type: ignore[valid-type]
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        )
    return params


def settings_command(
    model: type[Settings], run: Callable[[dict[str, Any]], None], doc: str
) -> Callable[..., None]:
    """A typer command over `model`'s fields that calls `run` with the flags given (by field name)."""

    def command(**given: Any) -> None:
        run({name: value for name, value in given.items() if value is not None})

    command.__signature__ = inspect.Signature(options(model))  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = run.__name__
    return command
