"""POST a webhook to the address that was checked, never to one a second lookup gives.

The transport resolves the URL's host itself, checks every address against the
policy, and connects to the first one, with the original name in the Host
header and as the TLS server name (SNI, certificate check). Redirects are not
followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import dataclasses

import httpx

from stepstream.server.core.schedules.destinations import BlockedDestination, DestinationPolicy


class PinnedTransport(httpx.AsyncBaseTransport):
    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy
        self._inner = httpx.AsyncHTTPTransport(retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        addresses = await self._policy.resolve(host, port)
        request.url = request.url.copy_with(host=str(addresses[0]))
        # The Host header was set from the name when the request was built.
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclasses.dataclass(frozen=True)
class Attempt:
    delivered: bool
    status_code: int = 0
    error: str = ""


class WebhookSender:
    def __init__(self, policy: DestinationPolicy, timeout: float) -> None:
        self._client = httpx.AsyncClient(
            transport=PinnedTransport(policy), timeout=timeout, follow_redirects=False
        )

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Attempt:
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except BlockedDestination as exc:
            return Attempt(False, 0, f"refused: {exc}")
        except httpx.TimeoutException:
            return Attempt(False, 0, "timed out")
        except httpx.HTTPError as exc:
            return Attempt(False, 0, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Attempt(True, response.status_code)
        if response.is_redirect:
            location = response.headers.get("location", "")
            return Attempt(False, response.status_code, f"redirect to {location!r} not followed")
        return Attempt(False, response.status_code, f"HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
