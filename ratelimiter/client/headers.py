"""What an API's answer says about its limits, and telling the shared budget.

Read from any answer (200 or 429):

- `Retry-After`: delta-seconds or an HTTP date.
- IETF RateLimit fields, both drafts: `RateLimit-Limit` / `-Remaining` / `-Reset`
  (delta-seconds), the combined `RateLimit: limit=100, remaining=50, reset=30`,
  and the structured `RateLimit: "default";r=50;t=30` with
  `RateLimit-Policy: "default";q=100;w=60`.
- `X-RateLimit-Limit` / `-Remaining` / `-Reset` (the reset as delta-seconds, or
  as Unix seconds when it is that large, as GitHub sends it).
- Provider forms for requests and tokens: `x-ratelimit-remaining-requests`,
  `x-ratelimit-remaining-tokens`, `x-ratelimit-reset-requests`,
  `x-ratelimit-reset-tokens` (durations such as "1s", "6m0s", "120ms"), and
  `anthropic-ratelimit-{requests,tokens}-{remaining,reset}` (RFC 3339 times).

`learn_from_response` turns them into limiter calls: a 429 pauses the key for
every caller, and a remaining below what the shared budget thinks it has is
consumed from it (ObserveRemaining), so every replica slows down when someone
outside stepstream spends the same API's budget.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import re
import time
from collections.abc import Mapping

from stepstream.ratelimiter.client.base import Limiter

# Above this an X-RateLimit-Reset is a Unix time, not a number of seconds.
_EPOCH_THRESHOLD = 1_000_000_000
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    """One limit as the API reports it."""

    remaining: int
    # Seconds until the API's count resets; None when it did not say.
    reset_after_s: float | None = None
    limit: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """Everything an answer said about the API's limits."""

    retry_after_s: float | None = None
    # The request limit (or the API's only limit).
    requests: Budget | None = None
    # The token limit of an LLM API.
    tokens: Budget | None = None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After value: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def duration_seconds(value: str | None) -> float | None:
    """ "1s", "6m0s", "1h2m3.5s", "120ms", or a bare number of seconds."""
    if not value:
        return None
    text = value.strip().lower()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


def _reset(value: str | None, now: float) -> float | None:
    seconds = duration_seconds(value)
    if seconds is not None and seconds > _EPOCH_THRESHOLD:
        return max(seconds - now, 0.0)
    if seconds is None and value:
        try:
            when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return max(when.timestamp() - now, 0.0)
    return seconds


def _params(text: str) -> dict[str, str]:
    """`limit=100, remaining=50, reset=30` or `"default";r=50;t=30` as one flat dict
    (the first item of a structured list, which is the policy that binds first)."""
    first = text.split(",")[0] if ";" in text else text
    out: dict[str, str] = {}
    for part in re.split(r"[;,]", first):
        name, eq, value = part.strip().partition("=")
        if eq:
            out[name.strip().lower()] = value.strip().strip('"')
    return out


def _ietf(h: Mapping[str, str], now: float) -> Budget | None:
    combined = h.get("ratelimit")
    if combined:
        p = _params(combined)
        policy = _params(h.get("ratelimit-policy", ""))
        remaining = _int(p.get("remaining", p.get("r")))
        if remaining is not None:
            reset = duration_seconds(p.get("reset", p.get("t")))
            return Budget(remaining, reset, _int(p.get("limit", policy.get("q"))))
    for prefix in ("ratelimit-", "x-ratelimit-"):
        remaining = _int(h.get(prefix + "remaining"))
        if remaining is not None:
            return Budget(remaining, _reset(h.get(prefix + "reset"), now), _int(h.get(prefix + "limit")))
    return None


def _provider(h: Mapping[str, str], what: str, now: float) -> Budget | None:
    remaining = _int(h.get(f"x-ratelimit-remaining-{what}"))
    if remaining is not None:
        limit = _int(h.get(f"x-ratelimit-limit-{what}"))
        return Budget(remaining, _reset(h.get(f"x-ratelimit-reset-{what}"), now), limit)
    remaining = _int(h.get(f"anthropic-ratelimit-{what}-remaining"))
    if remaining is not None:
        limit = _int(h.get(f"anthropic-ratelimit-{what}-limit"))
        return Budget(remaining, _reset(h.get(f"anthropic-ratelimit-{what}-reset"), now), limit)
    return None


def parse_rate_limit_headers(headers: Mapping[str, str], now: float | None = None) -> RateLimitInfo:
    """What the answer's headers say about the API's limits (names in any case)."""
    now = time.time() if now is None else now
    h = {k.lower(): v for k, v in headers.items()}
    requests = _provider(h, "requests", now) or _ietf(h, now)
    return RateLimitInfo(
        retry_after_seconds(h.get("retry-after"), now), requests, _provider(h, "tokens", now)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKeys:
    """Which limiter keys stand for an API's limits: its requests (or only) limit and,
    for an LLM API, its tokens limit."""

    requests: str | None
    tokens: str | None = None


@dataclasses.dataclass(slots=True)
class Learned:
    """What one answer changed in the shared budget."""

    throttled: bool = False
    paused_for_s: float = 0.0
    consumed: dict[str, int] = dataclasses.field(default_factory=dict)


async def learn_from_response(
    limiter: Limiter, keys: ApiKeys | str, status: int, headers: Mapping[str, str]
) -> Learned:
    """Tell the shared budget what the API's answer said: pause every caller on a 429,
    and consume what the API says it has fewer of than the budget thinks."""
    if isinstance(keys, str):
        keys = ApiKeys(keys)
    info = parse_rate_limit_headers(headers)
    learned = Learned()
    pairs = ((keys.requests, info.requests), (keys.tokens, info.tokens))
    for key, budget in pairs:
        if key is None or budget is None:
            continue
        consumed = await limiter.observe_remaining(key, budget.remaining, budget.reset_after_s)
        if consumed:
            learned.consumed[key] = consumed
    if status == 429:
        learned.throttled = True
        # The exhausted limit is paused; with no way to tell, the requests limit.
        exhausted = keys.tokens if info.tokens is not None and info.tokens.remaining <= 0 else None
        key = exhausted or keys.requests or keys.tokens
        if key is not None:
            wait = info.retry_after_s
            if wait is None:
                budget = info.tokens if exhausted else info.requests
                wait = budget.reset_after_s if budget is not None else None
            learned.paused_for_s = await limiter.report_throttled(key, wait or 0.0)
    return learned
