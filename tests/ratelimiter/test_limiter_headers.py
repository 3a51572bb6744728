"""Rate-limit headers in every form real APIs send, and what they change in the budget."""

from __future__ import annotations

import datetime
import email.utils

import httpx
import pytest

from stepstream.ratelimiter.client import LocalLimiter
from stepstream.ratelimiter.client.headers import (
    ApiKeys,
    Budget,
    duration_seconds,
    learn_from_response,
    parse_rate_limit_headers,
)
from stepstream.ratelimiter.client.http import RateLimitedTransport

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "requests", "tokens"),
    [
        # The first IETF draft, and the X- form with delta-seconds.
        (
            {"RateLimit-Limit": "100", "RateLimit-Remaining": "50", "RateLimit-Reset": "30"},
            Budget(50, 30.0, 100),
            None,
        ),
        ({"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "0.250"}, Budget(7, 0.25, None), None),
        # GitHub: the reset as a Unix time.
        (
            {"x-ratelimit-remaining": "4999", "x-ratelimit-reset": str(int(NOW) + 60)},
            Budget(4999, 60.0),
            None,
        ),
        # The combined field of the later drafts, and the structured one with its policy.
        ({"RateLimit": "limit=100, remaining=50, reset=30"}, Budget(50, 30.0, 100), None),
        (
            {"RateLimit": '"default";r=50;t=30', "RateLimit-Policy": '"default";q=100;w=60'},
            Budget(50, 30.0, 100),
            None,
        ),
        # OpenAI: requests and tokens, resets as Go durations.
        (
            {
                "x-ratelimit-limit-requests": "500",
                "x-ratelimit-remaining-requests": "499",
                "x-ratelimit-reset-requests": "120ms",
                "x-ratelimit-limit-tokens": "30000",
                "x-ratelimit-remaining-tokens": "28800",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            Budget(499, 0.12, 500),
            Budget(28800, 360.0, 30000),
        ),
        # Anthropic: RFC 3339 reset times.
        (
            {
                "anthropic-ratelimit-requests-remaining": "49",
                "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:10Z",
                "anthropic-ratelimit-tokens-remaining": "39000",
            },
            Budget(49, 10.0),
            Budget(39000),
        ),
        ({"Content-Type": "text/plain"}, None, None),
    ],
    ids=[
        "ietf-1",
        "x-delta",
        "github-epoch",
        "ietf-combined",
        "ietf-structured",
        "openai",
        "anthropic",
        "none",
    ],
)
def test_every_header_form_is_read(
    headers: dict[str, str], requests: Budget | None, tokens: Budget | None
) -> None:
    now = NOW
    if "anthropic-ratelimit-requests-reset" in headers:
        # Ten seconds before the reset in the headers.
        now = datetime.datetime(2027, 1, 15, 8, 0, 0, tzinfo=datetime.UTC).timestamp()
    info = parse_rate_limit_headers(headers, now=now)
    assert info.requests == (requests if requests is None else pytest.approx(requests))
    assert info.tokens == tokens


def test_retry_after_and_durations() -> None:
    later = email.utils.format_datetime(datetime.datetime.fromtimestamp(NOW + 30, datetime.UTC), usegmt=True)
    assert parse_rate_limit_headers({"Retry-After": "2.5"}).retry_after_s == 2.5
    assert 29 <= (parse_rate_limit_headers({"Retry-After": later}, now=NOW).retry_after_s or 0) <= 30
    assert parse_rate_limit_headers({"Retry-After": "soon"}).retry_after_s is None
    assert [duration_seconds(t) for t in ("1s", "6m0s", "1h2m3.5s", "120ms", "2")] == [
        1,
        360,
        3723.5,
        0.12,
        2,
    ]
    assert duration_seconds("3 parsecs") is None


async def test_remaining_below_the_budget_consumes_it_and_a_429_pauses() -> None:
    limiter = LocalLimiter.from_limits({"api": "60 per 10s"})
    async with limiter.acquire("api"):
        pass
    # The API says 19 left: someone else spent 40 of its 60.
    learned = await learn_from_response(limiter, "api", 200, {"X-RateLimit-Remaining": "19"})
    assert learned.consumed == {"api": 40} and not learned.throttled
    # Said again, nothing more is consumed: the budget already agrees.
    assert (await learn_from_response(limiter, "api", 200, {"X-RateLimit-Remaining": "19"})).consumed == {}
    _, state = await limiter.core.describe("api")
    assert state.available == 19
    learned = await learn_from_response(limiter, ApiKeys("api"), 429, {"Retry-After": "2"})
    assert learned.throttled and learned.paused_for_s == 2.0
    assert (await limiter.core.describe("api"))[1].paused_for_s > 1.5
    await limiter.close()


async def test_transport_learns_from_every_answer() -> None:
    limiter = LocalLimiter.from_limits(
        {"rpm": "100 per 1m", "tpm": {"rate": 10000, "period": "1m", "unit": "tokens"}}
    )
    answers = iter([429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        headers = {"x-ratelimit-remaining-requests": "90", "x-ratelimit-remaining-tokens": "5000"}
        if status == 429:
            headers["retry-after-ms"] = "10"
            headers["Retry-After"] = "0.05"
        return httpx.Response(status, headers=headers)

    transport = RateLimitedTransport(ApiKeys("rpm", "tpm"), limiter, transport=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("http://api.invalid/v1/chat")
    assert response.status_code == 200 and transport.throttled == 1
    # 10 requests and 5,000 tokens spent elsewhere, learnt once (the second answer agreed).
    assert transport.consumed >= 5000 + 8
    assert (await limiter.core.describe("tpm"))[1].available == 5000
    await limiter.close()
