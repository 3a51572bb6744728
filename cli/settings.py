"""Settings objects: one pydantic-settings model per command, each field a flag and a variable.

A field's flag is its name with dashes (`max_active_runs` is `--max-active-runs`) unless
the field names its own with `Flag` (`db_url: Annotated[str, Flag("--db")]`), and the
first flag names its environment variable: `--foo-bar` is `STEPSTREAM_FOO_BAR`. A flag
wins over the environment, the environment over the field's default.

Building a model takes only what it is given: a library or a test that makes one never
picks up the process's environment by accident. The commands call `load`, which reads
the environment beneath their flags (cli/settings_options.py derives the flags).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

PREFIX = "STEPSTREAM_"


class Flag:
    """The command-line names of a settings field whose flag is not `--field-name`.

    `invert`: a one-way flag that turns a default-on field off (`--no-migrate` sets
    migrate_on_start to False; STEPSTREAM_NO_MIGRATE=true does the same).
    """

    def __init__(self, *names: str, invert: bool = False) -> None:
        self.names = names
        self.invert = invert


class Settings(BaseSettings):
    """Base of every command's settings: frozen, unknown names refused, its docstrings the help."""

    # An empty variable counts as unset (a manifest's `value: ""` leaves the default).
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, case_sensitive=True, env_ignore_empty=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the caller passes; `load` adds the environment for the commands.
        return (init_settings,)


S = TypeVar("S", bound=Settings)


class SettingsInputError(ValueError):
    """A value a flag or a variable gave that its field refuses; the message names which."""


def _flag(field: FieldInfo) -> Flag | None:
    return next((m for m in field.metadata if isinstance(m, Flag)), None)


def flag_names(model: type[Settings], name: str) -> tuple[str, ...]:
    """The flags of field `name`, its long name first."""
    flag = _flag(model.model_fields[name])
    return flag.names if flag else ("--" + name.replace("_", "-"),)


def inverted(model: type[Settings], name: str) -> bool:
    flag = _flag(model.model_fields[name])
    return bool(flag and flag.invert)


def env_var(model: type[Settings], name: str) -> str:
    """The environment variable of field `name`: `--foo-bar` is STEPSTREAM_FOO_BAR."""
    long = next(n for n in flag_names(model, name) if n.startswith("--"))
    return PREFIX + long.removeprefix("--").replace("-", "_").upper()


def default_text(model: type[Settings], name: str) -> str | None:
    """Field `name`'s default as the help and docs show it; None when the field is required."""
    field = model.model_fields[name]
    if inverted(model, name):
        return "off"
    if field.is_required():
        return None
    if field.default_factory is not None:  # its docstring says what it computes
        return (field.default_factory.__doc__ or "computed").strip()
    default = field.default
    if default is None or default == "" or default == {}:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default.value if isinstance(default, enum.Enum) else default)


def describe(model: type[Settings], name: str) -> str:
    """Field `name`'s docstring on one line."""
    return " ".join((model.model_fields[name].description or "").split())


class _FlagEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, naming each field's variable after its flag."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = env_var(self.settings_cls, field_name)  # type: ignore[arg-type]
        return self.env_vars.get(name), field_name, False


def _reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return str(error["msg"]).removeprefix("Value error, ")


def _typed(model: type[Settings], name: str, value: Any, where: str) -> Any:
    """`value` as field `name` holds it, or a SettingsInputError saying `where` it came from."""
    field = model.model_fields[name]
    annotation: Any = bool if inverted(model, name) else field.annotation
    metadata = [] if inverted(model, name) else field.metadata
    try:
        typed = TypeAdapter(Annotated[annotation, *metadata] if metadata else annotation).validate_python(
            value
        )
    except ValidationError as exc:
        raise SettingsInputError(f"{where}: {_reason(exc)}") from None
    return not typed if inverted(model, name) else typed


def given_values(model: type[S], flags: Mapping[str, Any]) -> dict[str, Any]:
    """The fields set by flag (`flags`, by field name) or else by environment variable, typed."""
    try:
        environment = _FlagEnvSource(model)()
    except SettingsError as exc:  # a value the source itself could not decode
        raise SettingsInputError(str(exc)) from None
    values: dict[str, Any] = {}
    for name, raw in environment.items():
        if name not in flags:
            values[name] = _typed(model, name, raw, f"{env_var(model, name)}={raw!r}")
    for name, value in flags.items():
        values[name] = _typed(model, name, value, flag_names(model, name)[0])
    return values


def load(model: type[S], flags: Mapping[str, Any]) -> S:
    """The settings of one command: its flags, then STEPSTREAM_* variables, then defaults."""
    values = given_values(model, flags)
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] == "missing" and error["loc"]:
            name = str(error["loc"][0])
            raise SettingsInputError(
                f"{flag_names(model, name)[0]} (or {env_var(model, name)}) is required"
            ) from None
        where = ".".join(str(part) for part in error["loc"])
        raise SettingsInputError(f"{where + ': ' if where else ''}{_reason(exc)}") from None
