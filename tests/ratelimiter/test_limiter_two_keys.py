"""The LangChain adapter and the decorator over two keys (requests and tokens per
window), settled with the usage each call reported: a chat model and a graph node
call a mock LLM API (a separate process) that counts both, through a sidecar on
Redis. No 429, and the tokens budget follows real use, not the estimate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from stepstream.mockapi import MockApiConfig, MockApiProcess, fetch_stats, parse_shape
from stepstream.ratelimiter.client import RemoteLimiter, rate_limited
from stepstream.ratelimiter.client.langchain import LangChainRateLimiter, TokenUsageReconciler

pytestmark = pytest.mark.process

StartSidecar = Callable[..., Any]
ESTIMATE, ACTUAL = 900, 500
# 20 requests and 12,000 tokens a second: at the estimate the tokens would allow 13
# calls a second; settled at what each call used, the requests limit (20) binds.
API_LIMITS = {"requests": "20 per 1s", "tokens": "12000 per 1s"}
OUR_LIMITS = """store_timeout_ms = 500.0
[limits]
rpm = "20 per 1s"
tpm = { rate = 12000, period = "1s", unit = "tokens" }
"""
SECONDS = 6.0


class MockLlm(BaseChatModel):
    """A chat model whose every call is one POST to the mock API, which counts it
    and its tokens, and answers with an OpenAI-shaped usage block."""

    url: str
    tokens: int = ACTUAL
    statuses: list[int] = []

    @property
    def _llm_type(self) -> str:
        return "mock-llm"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("the test calls the model asynchronously")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, json={"tokens": self.tokens}) as r,
        ):
            body = await r.json()
            self.statuses.append(r.status)
        total = int(body.get("usage", {}).get("total_tokens", 0))
        message = AIMessage(
            content=str(body)[:300],
            usage_metadata={"input_tokens": total, "output_tokens": 0, "total_tokens": total},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


@pytest.fixture
def llm_api() -> Iterator[MockApiProcess]:
    config = MockApiConfig(
        limits={"llm": parse_shape(API_LIMITS["requests"])},
        token_limits={"llm": parse_shape(API_LIMITS["tokens"])},
        latency_ms=(1.0, 5.0),
    )
    with MockApiProcess(config) as api:
        yield api


def assert_settled(stats: dict[str, Any]) -> None:
    """More calls a second than the estimate alone allows (12,000 / 900 = 13.3): the
    unused estimate of each call went back to the budget."""
    requests = stats["limits"]["requests"]
    rate = requests["admitted_in_busy"] / requests["busy_s"]
    assert rate > 14.0, f"{rate:.1f} calls a second: the estimates were not settled"


async def _flush(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    await client.flushall()
    await client.aclose()


async def _llm_stats(api: MockApiProcess) -> dict[str, Any]:
    endpoint: dict[str, Any] = (await fetch_stats(api.url))["endpoints"]["llm"]
    return endpoint


async def test_langchain_chat_model_takes_requests_and_tokens_and_settles_usage(
    redis_server: Any, sidecars: StartSidecar, llm_api: MockApiProcess
) -> None:
    await _flush(redis_server.url)
    sidecar = sidecars(f'redis_url = "{redis_server.url}"\n{OUR_LIMITS}')
    shared = RemoteLimiter(sidecar.target)
    limiter = LangChainRateLimiter(shared, "rpm", timeout=30, also={"tpm": ESTIMATE})
    model = MockLlm(
        url=f"{llm_api.url}/llm/v1/chat/completions",
        rate_limiter=limiter,
        callbacks=[TokenUsageReconciler(limiter, "tpm")],
        statuses=[],
    )
    end = time.monotonic() + SECONDS

    async def caller() -> int:
        calls = 0
        while time.monotonic() < end:
            reply = await model.ainvoke("hello")
            assert reply.usage_metadata is not None, model.statuses
            assert reply.usage_metadata["total_tokens"] == ACTUAL, (model.statuses, reply)
            calls += 1
        return calls

    per_caller = await asyncio.gather(*(caller() for _ in range(40)))
    await shared.close()
    stats = await _llm_stats(llm_api)
    calls = sum(per_caller)
    print(f"\nLangChain, estimate {ESTIMATE}, actual {ACTUAL}: {calls} calls; {stats['limits']}")
    assert stats["rate_limited"] == 0 and set(model.statuses) == {200}
    assert stats["tokens_admitted"] == ACTUAL * calls
    assert min(per_caller) >= 1
    assert_settled(stats)


async def test_decorated_node_takes_two_keys_and_settles_usage(
    redis_server: Any, sidecars: StartSidecar, llm_api: MockApiProcess
) -> None:
    await _flush(redis_server.url)
    sidecar = sidecars(f'redis_url = "{redis_server.url}"\n{OUR_LIMITS}')
    shared = RemoteLimiter(sidecar.target)
    statuses: list[int] = []

    async with aiohttp.ClientSession() as session:

        @rate_limited(
            "rpm",
            timeout=30,
            limiter=shared,
            also={"tpm": ESTIMATE},
            usage=lambda reply: {"tpm": reply["usage"]["total_tokens"]},
        )
        async def node(state: dict[str, Any]) -> dict[str, Any]:
            async with session.post(f"{llm_api.url}/llm/v1/chat/completions", json={"tokens": ACTUAL}) as r:
                statuses.append(r.status)
                reply: dict[str, Any] = await r.json()
                return reply

        end = time.monotonic() + SECONDS

        async def caller() -> int:
            calls = 0
            while time.monotonic() < end:
                await node({})
                calls += 1
            return calls

        per_caller = await asyncio.gather(*(caller() for _ in range(40)))
    await shared.close()
    stats = await _llm_stats(llm_api)
    calls = sum(per_caller)
    print(f"\ndecorator, estimate {ESTIMATE}, actual {ACTUAL}: {calls} calls")
    assert stats["rate_limited"] == 0 and set(statuses) == {200}
    assert stats["tokens_admitted"] == ACTUAL * calls
    assert min(per_caller) >= 1
    assert_settled(stats)
