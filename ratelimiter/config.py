"""The sidecar's settings and declared limits, read from one TOML or YAML file.

One flat settings object with each default beside its field, and a strict
loader: a file with an unknown setting, a wrong type or an impossible limit is
refused at start with the file, the key and the reason, because a limiter that
silently ignores a typo grants the wrong budget for hours before anyone sees it.

A limit is written either as a table or as one short string, in one of two shapes:

    [limits]
    wikipedia = "50 per 1s"                       # a window: never more than 50 in any 1 s
    github = "5000 per 1h fixed"                  # a fixed window, phase unknown
    openai-tpm = { rate = 90000, period = "1m", window = "sliding", unit = "tokens" }
    internal = "200/s burst 20"                   # GCRA: a rate, plus a burst on top

A limit without `burst` is a window limit (the API never counts more than N in any
of its windows of W, whichever way it counts them); a limit with `burst` is GCRA
(at most rate x W + burst in any window W). Until window limits existed, `N per W`
meant GCRA with a burst of N/10, which overruns an API that allows no burst.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import pathlib
import re
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import NoDecode

from stepstream.cli.settings import Flag, Settings

FailureMode = Literal["local", "closed"]

# Above a million tokens a second the Redis back end (1 µs resolution) could
# not space tokens apart; no external API comes near it.
MAX_TOKENS_PER_SECOND = 1_000_000
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_UNITS_S: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_RATE_RE = re.compile(
    r"^\s*(?P<rate>\d+(?:\.\d+)?)\s*(?:/|per)\s*(?P<period>\d*(?:\.\d+)?\s*[a-z]+?)"
    r"(?:\s+burst\s+(?P<burst>\d+)|\s+(?P<window>sliding|fixed))?\s*$"
)
# The default spread allowed between a grant and the request's arrival at the API
# (docs/ratelimiter.md: measured on loopback with three sidecars and 192 callers).
DEFAULT_WINDOW_MARGIN_MS = 100.0


class ConfigError(ValueError):
    """A refused configuration, naming the file, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


class Shape(enum.Enum):
    """How a limit counts; the values are what the config's `window` field says."""

    # An exact token bucket: at most rate x W + burst in any window W.
    GCRA = "gcra"
    # Never more than `rate` in any window of `period_s`, wherever it starts.
    SLIDING = "sliding"
    # Never more than `rate` in one of the API's windows [k W + phase, (k+1) W + phase).
    # With the phase unknown it is kept as a sliding window, which is safe for any phase.
    FIXED = "fixed"


@dataclasses.dataclass(frozen=True)
class LimitSpec:
    """`rate` tokens per `period_s` seconds, at most `burst` tokens at once.

    Window shapes (SLIDING, FIXED) have burst == rate (the whole window may go at
    once) and `margin_s`: the longest a granted request may take to reach the API.
    """

    key: str
    rate: float
    period_s: float
    burst: int
    unit: str = "requests"
    shape: Shape = Shape.GCRA
    margin_s: float = 0.0
    # FIXED only: where the API's windows start, seconds after multiples of period_s
    # since the Unix epoch on the store's clock; None: unknown (counted as sliding).
    phase_s: float | None = None
    # Window shapes: at most this many tokens in any at_once/rate of the window, so a
    # window's worth is not granted in one instant (its callers could not all send in
    # time: the last would reach the API after the margin). 0: the whole window at once.
    at_once: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.rate / self.period_s

    @property
    def is_window(self) -> bool:
        return self.shape is not Shape.GCRA

    @property
    def aligned(self) -> bool:
        """A fixed window whose phase is known: counted per API window, not sliding."""
        return self.shape is Shape.FIXED and self.phase_s is not None

    def describe(self) -> str:
        """The limit as a user would write it (for logs and ListLimits)."""
        if not self.is_window:
            return f"{self.rate:g} per {self.period_s:g}s burst {self.burst}"
        text = f"{self.rate:g} per {self.period_s:g}s {self.shape.value}"
        return text if self.phase_s is None else f"{text} phase {self.phase_s:g}s"

    def scaled(self, share: int) -> LimitSpec:
        """This limit divided among `share` replicas (the conservative local budget).

        Rounded down, never below one token at once, so the replicas together stay
        within the global limit whenever the global burst allows one each.
        """
        if share <= 1:
            return self
        if self.is_window:
            n = max(1, int(self.rate) // share)
            at_once = max(1, self.at_once // share) if self.at_once else 0
            return dataclasses.replace(self, rate=float(n), burst=n, at_once=at_once)
        return dataclasses.replace(self, rate=self.rate / share, burst=max(1, self.burst // share))


def limit_items(value: Any) -> Any:
    """Limits as flags and variables give them: KEY=LIMIT items (`--limit`, repeated), or one
    string of them separated by ';' or new lines (STEPSTREAM_LIMIT), as a table; a table passes."""
    if isinstance(value, str):
        value = [item for line in value.splitlines() for item in line.split(";") if item.strip()]
    if isinstance(value, list | tuple):
        table: dict[str, Any] = {}
        for item in value:
            key, sep, spec = str(item).partition("=")
            if not sep:
                raise ValueError(f"expected KEY=LIMIT, e.g. 'arxiv=1 per 3s', got {item!r}")
            table[key.strip()] = spec.strip()
        value = table
    return value


def _limits_given(value: Any) -> Any:
    """The field's validator: limits given as items or a table, each parsed (the default margin)."""
    value = limit_items(value)
    if not isinstance(value, Mapping):
        return value
    try:
        return {
            k: v if isinstance(v, LimitSpec) else parse_limit(k, v, "<settings>") for k, v in value.items()
        }
    except ConfigError as exc:
        raise ValueError(f"{exc.key}: {exc.reason}") from None


class LimiterSettings(Settings):
    """The sidecar's settings: a flag of `stepstream ratelimiter`, a STEPSTREAM_* variable and a
    key of its settings file each (cli/settings.py); flags win, then variables, then the file."""

    config_path: Annotated[str | None, Flag("--config", "-c")] = None
    """Settings and limits file (.toml, .yaml)."""
    # It serves the pod's server over localhost.
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 50061
    """Port to listen on (0: any free port)."""
    redis_url: Annotated[str, Flag("--redis")] = ""
    """Redis URL shared by every sidecar; empty: the in-memory back end (one process)."""
    key_prefix: str = "stepstream:rl:"
    """Prefix of the Redis keys holding each limit's state."""
    on_store_failure: FailureMode = "local"
    """Redis unreachable: 'local' grants from a conservative local budget (each limit divided by
    expected_replicas); 'closed' refuses with UNAVAILABLE."""
    expected_replicas: int = 1
    """Sidecars expected to share the Redis budget; sizes the local budget."""
    # So an outage is noticed within about this long instead of a multi-second socket timeout.
    store_timeout_ms: float = 50.0
    """A Redis call slower than this counts as a failure."""
    store_retry_ms: float = 100.0
    """While Redis is down, how often one request tries it again."""
    # Callers further back are queued in the sidecar in priority order, so a late interactive
    # caller overtakes queued batch callers by up to this much.
    reserve_ahead_ms: float = 250.0
    """How far ahead a slot may be reserved for a caller that must wait."""
    max_waiters_per_key: int = 10_000
    """Callers queued on one key before new ones get RESOURCE_EXHAUSTED."""
    max_batch: int = 64
    """Reservations asked of the store in one call (one Redis round trip)."""
    # Answer of the RPC, the caller's wake-up, the trip to the API; a limit's own `margin`
    # overrides it. Grants are spaced so that N fit in W + margin.
    window_margin_ms: float = DEFAULT_WINDOW_MARGIN_MS
    """Window limits: the longest a granted request may take to reach the API, in ms."""
    default_pause_s: float = 1.0
    """Pause after a reported 429 that carried no Retry-After, in seconds."""
    max_pause_s: float = 300.0
    """Longest pause a reported 429 may ask, in seconds."""
    lease_ttl_s: float = 10.0
    """Lifetime of a lease when the caller asks none, in seconds."""
    max_lease_ttl_s: float = 300.0
    """Longest lease allowed, in seconds."""
    # The sidecar's requests are a few dozen bytes.
    max_message_bytes: int = 64 * 1024
    """Largest request accepted, in bytes."""
    # Who may call (SECURITY.md): with neither a principals file nor a JWT key set,
    # authentication is off, which is allowed only on a loopback host unless
    # allow_unauthenticated.
    auth_file: str = ""
    """Principals file: API keys (by SHA-256) and client-certificate names."""
    jwt_keys_file: Annotated[str, Flag("--jwt-keys")] = ""
    """JWKS file or PEM public key for bearer tokens (JWT)."""
    jwt_issuer: str = ""
    """Issuer a token must name (empty: not checked)."""
    jwt_audience: str = ""
    """Audience a token must name (empty: not checked)."""
    allow_unauthenticated: bool = False
    """Serve a non-loopback host without authentication."""
    # With a certificate and key plaintext is refused; with a client CA, callers must present a
    # certificate it signed (mTLS, e.g. the servers of other pods).
    tls_cert_file: Annotated[str, Flag("--tls-cert")] = ""
    """Server certificate."""
    tls_key_file: Annotated[str, Flag("--tls-key")] = ""
    """Its private key."""
    tls_client_ca_file: Annotated[str, Flag("--tls-client-ca")] = ""
    """Require client certificates of this CA (mTLS)."""
    limits: Annotated[Mapping[str, LimitSpec], NoDecode, BeforeValidator(_limits_given), Flag("--limit")] = (
        Field(default_factory=dict)
    )
    """The declared limits, by key: KEY=LIMIT, e.g. 'arxiv=1 per 3s' (a file's [limits] table)."""

    def __init__(self, **values: Any) -> None:
        # Refused with the loader's own words (ConfigError), whichever check catches it.
        mode = values.get("on_store_failure", "local")
        if mode not in get_args(FailureMode):
            raise ConfigError("<settings>", "on_store_failure", f"must be 'local' or 'closed', got {mode!r}")
        try:
            super().__init__(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"]) or "<settings>"
            raise ConfigError("<settings>", key, str(error["msg"]).removeprefix("Value error, ")) from None
        _validate_settings(self, "<settings>")


def parse_duration(text: str | int | float, source: str, key: str) -> float:
    """Seconds from a number of seconds or a string like "3s", "500ms", "1m", "min"."""
    if isinstance(text, bool):
        raise ConfigError(source, key, f"expected a duration, got {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    elif isinstance(text, str):
        match = _DURATION_RE.match(text.lower())
        if not match or match.group(2) not in _UNITS_S:
            raise ConfigError(source, key, f"bad duration {text!r} (use e.g. 500ms, 3s, 1m, 1h)")
        value = float(match.group(1) or 1) * _UNITS_S[match.group(2)]
    else:
        raise ConfigError(source, key, f"expected a duration, got {type(text).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(source, key, f"duration must be positive, got {text!r}")
    return value


def default_burst(rate: float) -> int:
    # A tenth of a period's worth, as `200/s burst 20`; never below one token (GCRA
    # tables that give no burst were read this way before window limits existed).
    return max(1, math.ceil(rate / 10))


_TABLE_FIELDS = ("rate", "period", "burst", "window", "margin", "phase", "at_once", "unit")


def _table_of(value: Any, source: str, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        match = _RATE_RE.match(value.lower())
        if not match:
            raise ConfigError(
                source,
                where,
                f"bad limit {value!r} (use e.g. '50 per 1s', '500 per 1m fixed' or '200/s burst 20')",
            )
        table: dict[str, Any] = {"rate": float(match.group("rate")), "period": match.group("period")}
        if match.group("burst"):
            table["burst"] = int(match.group("burst"))
        if match.group("window"):
            table["window"] = match.group("window")
        return table
    if isinstance(value, Mapping):
        table = dict(value)
        unknown = set(table) - set(_TABLE_FIELDS)
        if unknown:
            raise ConfigError(
                source, f"{where}.{sorted(unknown)[0]}", f"unknown field ({', '.join(_TABLE_FIELDS)})"
            )
        return table
    raise ConfigError(source, where, f"expected a table or a string, got {type(value).__name__}")


def _shape_of(table: Mapping[str, Any], source: str, where: str) -> Shape:
    window = table.get("window")
    if window is None:
        # With a burst the limit is GCRA, as it always was; without, a sliding window.
        return Shape.GCRA if "burst" in table else Shape.SLIDING
    if window not in ("sliding", "fixed"):
        raise ConfigError(source, f"{where}.window", f"must be 'sliding' or 'fixed', got {window!r}")
    if "burst" in table:
        raise ConfigError(
            source,
            f"{where}.burst",
            "a window limit has no burst (the whole window may go at once): drop `burst`, "
            "or drop `window` for a GCRA rate with a burst",
        )
    return Shape(window)


def parse_limit(
    key: str, value: Any, source: str, default_margin_s: float = DEFAULT_WINDOW_MARGIN_MS / 1000
) -> LimitSpec:
    where = f"limits.{key}"
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ConfigError(
            source, where, "a key is 1-128 letters, digits or . _ : / - and starts alphanumeric"
        )
    table = _table_of(value, source, where)
    if "rate" not in table:
        raise ConfigError(source, f"{where}.rate", "missing")
    rate = table["rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise ConfigError(source, f"{where}.rate", f"must be a positive number, got {rate!r}")
    period = parse_duration(table.get("period", 1), source, f"{where}.period")
    shape = _shape_of(table, source, where)
    unit = table.get("unit", "requests")
    if not isinstance(unit, str) or not unit:
        raise ConfigError(source, f"{where}.unit", "must be a non-empty string")
    if shape is Shape.GCRA:
        for name in ("margin", "phase", "at_once"):
            if name in table:
                raise ConfigError(source, f"{where}.{name}", "only window limits (no burst) take it")
        burst = table.get("burst", default_burst(float(rate)))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(source, f"{where}.burst", f"must be a whole number >= 1, got {burst!r}")
        spec = LimitSpec(key=key, rate=float(rate), period_s=period, burst=burst, unit=unit)
    else:
        spec = _window_spec(key, table, source, where, float(rate), period, shape, unit, default_margin_s)
    if spec.tokens_per_second > MAX_TOKENS_PER_SECOND:
        raise ConfigError(source, f"{where}.rate", f"above {MAX_TOKENS_PER_SECOND} tokens per second")
    return spec


def _offset(value: Any, source: str, key: str) -> float:
    """A duration that may be zero ("0", "0s", 0)."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value.lower())
        if match and match.group(1) is not None and float(match.group(1)) == 0:
            return 0.0
    elif isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    return parse_duration(value, source, key)


def _window_spec(
    key: str,
    table: Mapping[str, Any],
    source: str,
    where: str,
    rate: float,
    period: float,
    shape: Shape,
    unit: str,
    default_margin_s: float,
) -> LimitSpec:
    if rate != int(rate):
        raise ConfigError(source, f"{where}.rate", f"a window counts whole requests or tokens, got {rate!r}")
    margin = default_margin_s
    if "margin" in table:
        margin = _offset(table["margin"], source, f"{where}.margin")
    if margin >= period:
        raise ConfigError(source, f"{where}.margin", f"{margin:g} s is not below the window ({period:g} s)")
    phase: float | None = None
    if "phase" in table:
        if shape is not Shape.FIXED:
            raise ConfigError(source, f"{where}.phase", "only a fixed window has a phase")
        raw = table["phase"]
        phase = _offset(raw, source, f"{where}.phase")
        if phase >= period:
            raise ConfigError(source, f"{where}.phase", f"must be below the window ({period:g} s)")
        if 2 * margin >= period:
            raise ConfigError(source, f"{where}.margin", "an aligned fixed window needs a margin below W/2")
    n = int(rate)
    at_once = table.get("at_once", default_at_once(n, unit))
    if isinstance(at_once, bool) or not isinstance(at_once, int) or not 1 <= at_once <= n:
        raise ConfigError(
            source, f"{where}.at_once", f"must be a whole number from 1 to {n}, got {at_once!r}"
        )
    return LimitSpec(key, float(n), period, n, unit, shape, margin, phase, at_once)


def default_at_once(n: int, unit: str = "requests") -> int:
    # A tenth of the window at once: a busy process sends ten requests within a few
    # milliseconds, where a hundred at once would reach the API over a hundred or more.
    # Other units (tokens) are not paced: a call's tokens go with one request, and the
    # requests limit beside them paces the calls.
    return max(1, math.ceil(n / 10)) if unit == "requests" else n


def _check_type(source: str, key: str, value: Any, expected: type) -> None:
    ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(source, key, f"expected {expected.__name__}, got {type(value).__name__} {value!r}")


def _plain_type(annotation: Any) -> type:
    """str, int, float or bool, which a file's value must be; object: checked elsewhere."""
    plain: tuple[type, ...] = (str, int, float, bool)
    return annotation if annotation in plain else object


_FIELD_TYPES: dict[str, type] = {
    name: _plain_type(field.annotation) for name, field in LimiterSettings.model_fields.items()
}
_FIELD_TYPES["on_store_failure"] = str


def _validate_settings(s: LimiterSettings, source: str) -> None:
    for name, expected in _FIELD_TYPES.items():
        if expected is not object:
            _check_type(source, name, getattr(s, name), expected)
    if s.on_store_failure not in get_args(FailureMode):
        raise ConfigError(
            source, "on_store_failure", f"must be 'local' or 'closed', got {s.on_store_failure!r}"
        )
    if not 0 <= s.port < 65536:
        raise ConfigError(source, "port", f"must be 0-65535 (0: any free port), got {s.port}")
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            source, "redis_url", f"must start with redis://, rediss:// or unix://, got {s.redis_url!r}"
        )
    positive = ("store_timeout_ms", "store_retry_ms", "default_pause_s", "max_pause_s", "lease_ttl_s")
    for name in (*positive, "max_lease_ttl_s"):
        value = getattr(s, name)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(source, name, f"must be positive, got {value!r}")
    if not math.isfinite(s.window_margin_ms) or s.window_margin_ms < 0:
        raise ConfigError(source, "window_margin_ms", f"must be >= 0, got {s.window_margin_ms!r}")
    if not math.isfinite(s.reserve_ahead_ms) or s.reserve_ahead_ms < 0:
        raise ConfigError(source, "reserve_ahead_ms", f"must be >= 0, got {s.reserve_ahead_ms!r}")
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        raise ConfigError(source, "tls_cert_file", "a TLS certificate needs its key (tls_key_file), and back")
    if s.tls_client_ca_file and not s.tls_cert_file:
        raise ConfigError(source, "tls_client_ca_file", "client certificates need TLS (tls_cert_file)")
    for name in ("expected_replicas", "max_waiters_per_key", "max_batch", "max_message_bytes"):
        if getattr(s, name) < 1:
            raise ConfigError(source, name, f"must be >= 1, got {getattr(s, name)}")
    if s.lease_ttl_s > s.max_lease_ttl_s:
        raise ConfigError(source, "lease_ttl_s", f"above max_lease_ttl_s ({s.max_lease_ttl_s})")
    for key, spec in s.limits.items():
        if not isinstance(spec, LimitSpec) or spec.key != key:
            raise ConfigError(source, f"limits.{key}", "must be a LimitSpec with the same key")


def settings_from_mapping(data: Mapping[str, Any], source: str = "<config>") -> LimiterSettings:
    """Build settings from a parsed file, refusing anything unknown or malformed."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, "<top>", f"expected a table of settings, got {type(data).__name__}")
    # A file cannot name the file to read.
    fields = set(LimiterSettings.model_fields) - {"config_path"}
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            raise ConfigError(source, str(name), f"unknown setting (known: {', '.join(sorted(fields))})")
        if name == "limits":
            continue
        _check_type(source, name, value, _FIELD_TYPES[name])
        values[name] = float(value) if _FIELD_TYPES[name] is float else value
    raw_limits = data.get("limits")
    if raw_limits is None:
        raise ConfigError(source, "limits", "missing: declare at least one limit")
    if not isinstance(raw_limits, Mapping) or not raw_limits:
        raise ConfigError(source, "limits", "must be a non-empty table of key = limit")
    margin_s = float(values.get("window_margin_ms", DEFAULT_WINDOW_MARGIN_MS)) / 1000
    if not math.isfinite(margin_s) or margin_s < 0:
        raise ConfigError(source, "window_margin_ms", f"must be >= 0, got {margin_s * 1000!r}")
    values["limits"] = {
        str(k): v if isinstance(v, LimitSpec) else parse_limit(k, v, source, margin_s)
        for k, v in raw_limits.items()
    }
    try:
        return LimiterSettings(**values)
    except ConfigError as exc:
        raise ConfigError(source, exc.key, exc.reason) from None


def read_config_file(path: str | pathlib.Path) -> dict[str, Any]:
    """The raw table of a .toml, .yaml or .yml settings file."""
    file = pathlib.Path(path)
    source = str(file)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(source, "<file>", f"cannot read: {exc.strerror or exc}") from None
    try:
        if file.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(source, "<file>", "unknown format: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(source, "<file>", f"not valid {file.suffix[1:].upper()}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, "<top>", f"expected a table of settings, got {type(data).__name__}")
    return dict(data)


def load_settings(
    path: str | pathlib.Path | None, limits: Mapping[str, Any] | None = None, **overrides: Any
) -> LimiterSettings:
    """Settings from a file (or none); `overrides` and extra `limits` from the command line win."""
    data = read_config_file(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if limits:
        file_limits = data.get("limits")
        data["limits"] = {**(file_limits if isinstance(file_limits, Mapping) else {}), **limits}
    return settings_from_mapping(data, str(path) if path is not None else "<command line>")
