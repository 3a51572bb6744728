"""The rate-limit headers the mock answers with, in the forms real APIs use.

On every answer of a limited endpoint (200 and 429 alike), describing the state
right after this request was counted:

- `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (GitHub,
  Twitter and many others) and the IETF draft's `RateLimit-Limit`,
  `RateLimit-Remaining`, `RateLimit-Reset`, for the requests limit. Reset is the
  seconds until the budget is whole again: a decimal in the X- form, whole
  seconds rounded up in the IETF form.
- On the LLM endpoint (and any endpoint with a tokens limit), OpenAI's pairs
  `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
  `x-ratelimit-reset-requests` and the same with `-tokens`; their reset is a
  duration as OpenAI writes it (`20ms`, `1.5s`, `6m0s`).
"""

from __future__ import annotations

import math

from stepstream.mockapi.limits import Counter, Limit, Window


def capacity(live: Counter) -> int:
    """What the limit allows at once: the window's N, or GCRA's burst."""
    shape = live.shape
    return shape.limit if isinstance(shape, Window) else shape.burst


def is_limited(live: Counter) -> bool:
    return not (isinstance(live.shape, Limit) and live.shape.unlimited)


def duration(seconds: float) -> str:
    """A duration as OpenAI's headers write it, rounded up to the millisecond: `120ms`, `1.5s`, `6m0s`."""
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest_ms = divmod(ms, 60_000)
    text = f"{rest_ms // 1000}.{rest_ms % 1000:03d}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{text}" if minutes else text


def limit_headers(requests: Counter, tokens: Counter, openai: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    if is_limited(requests):
        reset = requests.reset_s()
        limit, remaining = str(capacity(requests)), str(requests.remaining())
        headers |= {
            "X-RateLimit-Limit": limit,
            "X-RateLimit-Remaining": remaining,
            "X-RateLimit-Reset": f"{reset:.3f}",
            "RateLimit-Limit": limit,
            "RateLimit-Remaining": remaining,
            "RateLimit-Reset": str(math.ceil(reset)),
        }
    if openai:
        for suffix, live in (("requests", requests), ("tokens", tokens)):
            if is_limited(live):
                headers[f"x-ratelimit-limit-{suffix}"] = str(capacity(live))
                headers[f"x-ratelimit-remaining-{suffix}"] = str(live.remaining())
                headers[f"x-ratelimit-reset-{suffix}"] = duration(live.reset_s())
    return headers
