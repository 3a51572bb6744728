"""The mock API's settings: per-endpoint limits in any shape, latency, jitter; from code or TOML.

A config file names each endpoint's requests limit and, beside it, a tokens
limit, as short strings (see `limits.parse_shape`) or tables:

    latency_ms = "20-80"
    arrival_jitter_ms = "0-50"

    [endpoints.wikipedia]
    requests = "50 per 1s"                       # sliding window
    [endpoints.arxiv]
    requests = { limit = 500, window = "1m", kind = "fixed", offset = "0.3s" }
    [endpoints.llm]
    requests = "500 per 1m"
    tokens = "90000 per 1m"
    [endpoints.search]                           # any other name: served at /api/search
    requests = "20/s burst 5"                    # GCRA

Unknown keys, bad limits and bad ranges are refused with the file and the key,
because a mock that silently ignores a typo measures the wrong thing.
"""

from __future__ import annotations

import pathlib
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Final

from stepstream.mockapi.limits import UNLIMITED, Limit, Shape, Window, parse_duration, parse_shape

WIKIPEDIA: Final = "wikipedia"
ARXIV: Final = "arxiv"
LLM: Final = "llm"
# Endpoints with a shape of their own; any other configured name is served at /api/{name}.
BUILTIN: Final = (WIKIPEDIA, ARXIV, LLM)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _default_limits() -> dict[str, Shape]:
    return {WIKIPEDIA: Limit.per_second(50, 10), ARXIV: Limit.per_second(50, 10), LLM: Window(500, 60.0)}


def _default_token_limits() -> dict[str, Shape]:
    return {LLM: Window(90_000, 60.0)}


@dataclass(frozen=True)
class MockApiConfig:
    # The requests limit of each endpoint; an endpoint not named here is unlimited.
    limits: dict[str, Shape] = field(default_factory=_default_limits)
    # The tokens limit beside it (tokens as each request reports them), where there is one.
    token_limits: dict[str, Shape] = field(default_factory=_default_token_limits)
    # Each served request waits a uniform random time in this range, like a remote API.
    latency_ms: tuple[float, float] = (20.0, 80.0)
    # Each request waits a uniform random time in this range BEFORE it is counted, as the
    # network between a grant and the API's counter would delay it.
    arrival_jitter_ms: tuple[float, float] = (0.0, 0.0)
    seed: int | None = None

    @property
    def endpoints(self) -> tuple[str, ...]:
        extra = sorted((set(self.limits) | set(self.token_limits)) - set(BUILTIN))
        return (*BUILTIN, *extra)

    def __post_init__(self) -> None:
        for name in (*self.limits, *self.token_limits):
            if not _NAME.match(name):
                raise ValueError(f"bad endpoint name {name!r}: lower-case letters, digits, '-' and '_'")
        for what, (low, high) in (
            ("latency_ms", self.latency_ms),
            ("arrival_jitter_ms", self.arrival_jitter_ms),
        ):
            if low < 0 or high < low:
                raise ValueError(f"{what}: need 0 <= MIN <= MAX, got {low}-{high}")


def parse_range_ms(text: str) -> tuple[float, float]:
    """`20-80` (a uniform range), `50` (fixed) or `0` (none), in milliseconds."""
    low, sep, high = str(text).partition("-")
    try:
        bounds = (float(low), float(high)) if sep else (float(low), float(low))
    except ValueError:
        raise ValueError(f"expected MS or MIN-MAX in milliseconds, got {text!r}") from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise ValueError(f"need 0 <= MIN <= MAX, got {text!r}")
    return bounds


def shape_from(value: Any) -> Shape:
    """A limit from a config value: a short string, or a table {limit, window, kind, offset} /
    {rate, burst} (rate per second, GCRA)."""
    if isinstance(value, str):
        return parse_shape(value)
    if not isinstance(value, dict):
        raise ValueError(f"a limit is a string or a table, got {value!r}")
    if "rate" in value:
        unknown = set(value) - {"rate", "burst"}
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r} of a GCRA limit (rate, burst)")
        return Limit(float(value["rate"]), int(value.get("burst", 1)))
    unknown = set(value) - {"limit", "window", "kind", "offset"}
    if unknown:
        raise ValueError(
            f"unknown field {sorted(unknown)[0]!r} of a window limit (limit, window, kind, offset)"
        )
    kind = value.get("kind", "sliding")
    if kind not in ("sliding", "fixed"):
        raise ValueError(f"kind must be 'sliding' or 'fixed', got {kind!r}")
    window = value.get("window", "1s")
    window_s = float(window) if isinstance(window, int | float) else parse_duration(window)
    offset = value.get("offset", 0.0)
    offset_s = float(offset) if isinstance(offset, int | float) else parse_duration(offset)
    return Window(int(value["limit"]), window_s, fixed=kind == "fixed", offset_s=offset_s)


def from_mapping(
    data: dict[str, Any], source: str = "<config>", base: MockApiConfig | None = None
) -> MockApiConfig:
    """`base` with the settings of a parsed config file; errors name `source` and the key."""
    config = base or MockApiConfig()
    unknown = set(data) - {"endpoints", "latency_ms", "arrival_jitter_ms", "seed"}
    if unknown:
        known = "endpoints, latency_ms, arrival_jitter_ms, seed"
        raise ValueError(f"{source}: {sorted(unknown)[0]}: unknown setting ({known})")
    limits, token_limits = dict(config.limits), dict(config.token_limits)
    for name, table in (data.get("endpoints") or {}).items():
        where = f"{source}: endpoints.{name}"
        if not isinstance(table, dict) or set(table) - {"requests", "tokens"}:
            raise ValueError(f"{where}: a table with 'requests' and/or 'tokens', got {table!r}")
        try:
            if "requests" in table:
                limits[name] = shape_from(table["requests"])
            if "tokens" in table:
                token_limits[name] = shape_from(table["tokens"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    changes: dict[str, Any] = {"limits": limits, "token_limits": token_limits}
    try:
        for key in ("latency_ms", "arrival_jitter_ms"):
            if key in data:
                changes[key] = parse_range_ms(str(data[key]))
    except ValueError as exc:
        raise ValueError(f"{source}: {key}: {exc}") from None
    if "seed" in data:
        changes["seed"] = int(data["seed"])
    try:
        return replace(config, **changes)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def load_file(path: str | pathlib.Path, base: MockApiConfig | None = None) -> MockApiConfig:
    path = pathlib.Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return from_mapping(data, str(path), base)


def to_toml(config: MockApiConfig) -> str:
    """`config` as a config file, so a child process gets exactly the same settings."""
    lines = [
        f'latency_ms = "{config.latency_ms[0]}-{config.latency_ms[1]}"',
        f'arrival_jitter_ms = "{config.arrival_jitter_ms[0]}-{config.arrival_jitter_ms[1]}"',
    ]
    if config.seed is not None:
        lines.append(f"seed = {config.seed}")
    for name in config.endpoints:
        lines.append(f"[endpoints.{name}]")
        lines.append(f'requests = "{config.limits.get(name, UNLIMITED).spec()}"')
        lines.append(f'tokens = "{config.token_limits.get(name, UNLIMITED).spec()}"')
    return "\n".join(lines) + "\n"
