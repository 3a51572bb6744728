"""A React page on useStream (@langchain/langgraph-sdk, pinned) in headless Chromium, against a live server.

It shows what a browser front end relies on: tokens stream into the page as they are produced,
an interrupt is shown and answered from the page (Command resume) and the run goes on, and a
reload rejoins the running stream (useStream's reconnectOnMount: joinStream with
Last-Event-ID -1). Each test saves a screenshot in its own output folder (tmp_path).
"""

from __future__ import annotations

import pathlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from playwright.sync_api import Page, Playwright, Request, sync_playwright

from tests.graphs.http_graphs import SLOW_CHAT_WORDS, chat_reply
from tests.server.http.browser import build_page, chromium, static_site
from tests.server.http.servers import HttpServer

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with static_site(build_page(tmp_path_factory.mktemp("page"))) as url:
        yield url


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def page(playwright: Playwright, tmp_path: pathlib.Path) -> Iterator[Page]:
    with chromium(playwright, tmp_path / "profile") as context:
        yield context.pages[0] if context.pages else context.new_page()


def _open(page: Page, page_url: str, server: HttpServer, assistant: str) -> None:
    query = {"api": server.url, "assistant": assistant}
    if "x-api-key" in server.headers:
        query["key"] = server.headers["x-api-key"]
    page.goto(f"{page_url}/index.html?{urllib.parse.urlencode(query)}")
    page.wait_for_selector("#send:not([disabled])", timeout=TIMEOUT_MS)


def _send(page: Page, text: str) -> None:
    page.fill("#draft", text)
    page.click("#send")


def _last_ai(page: Page) -> str:
    return page.locator('#messages li[data-type="ai"]').last.inner_text()


def _wait_ai_text(page: Page, text: str) -> None:
    page.wait_for_function(
        """(want) => { const ai = [...document.querySelectorAll('#messages li[data-type="ai"]')];
                       return ai.length > 0 && ai.at(-1).textContent === want; }""",
        arg=text,
        timeout=TIMEOUT_MS,
    )


def _lengths(page: Page) -> list[int]:
    return list(page.evaluate("window.__harness.lengths"))


def _thread_state(server: HttpServer, thread_id: str) -> dict[str, Any]:
    # The sync client: Playwright's sync API already runs an event loop in this thread.
    with get_sync_client(url=server.url, headers=server.headers) as client:
        return dict(client.threads.get(thread_id))


def _thread_id(page: Page) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["thread"][0]


def test_tokens_stream_into_the_page(
    page: Page, page_url: str, http_server: HttpServer, tmp_path: pathlib.Path
) -> None:
    _open(page, page_url, http_server, "slow_chat")
    _send(page, "tokens please")
    want = chat_reply("tokens please", SLOW_CHAT_WORDS)
    _wait_ai_text(page, want)
    page.screenshot(path=str(tmp_path / "tokens.png"))
    lengths = _lengths(page)
    partial = [n for n in lengths if 0 < n < len(want)]
    # Each token a render of its own: the reply grew on the page, it did not arrive whole.
    assert len(partial) >= SLOW_CHAT_WORDS, lengths
    assert partial == sorted(partial), lengths
    assert page.inner_text("#status") == "idle"
    assert page.locator("#error").count() == 0
    thread = _thread_state(http_server, _thread_id(page))
    assert thread["status"] == "idle"
    assert [m["content"] for m in thread["values"]["messages"]] == ["tokens please", want]


def test_an_interrupt_is_answered_from_the_page(
    page: Page, page_url: str, http_server: HttpServer, tmp_path: pathlib.Path
) -> None:
    _open(page, page_url, http_server, "approve")
    _send(page, "ship it")
    page.wait_for_selector("#question", timeout=TIMEOUT_MS)
    assert page.inner_text("#question") == "Approve the plan?"
    page.screenshot(path=str(tmp_path / "interrupt.png"))
    thread_id = _thread_id(page)
    assert _thread_state(http_server, thread_id)["status"] == "interrupted"

    page.click("#approve")
    _wait_ai_text(page, "Approved: yes. Carrying on with the plan now.")
    page.wait_for_selector("#question", state="detached", timeout=TIMEOUT_MS)
    page.screenshot(path=str(tmp_path / "resumed.png"))
    thread = _thread_state(http_server, thread_id)
    assert thread["status"] == "idle"
    assert thread["values"]["approved"] == "yes"


def test_a_reload_rejoins_the_running_stream(
    page: Page, page_url: str, http_server: HttpServer, tmp_path: pathlib.Path
) -> None:
    _open(page, page_url, http_server, "slow_chat")
    _send(page, "reload me")
    want = chat_reply("reload me", SLOW_CHAT_WORDS)
    page.wait_for_function("window.__harness.lengths.at(-1) > 20", timeout=TIMEOUT_MS)
    thread_id = _thread_id(page)

    joins: list[Request] = []
    page.on("request", lambda r: joins.append(r) if r.method == "GET" and "/stream" in r.url else None)
    page.reload()
    _wait_ai_text(page, want)
    page.screenshot(path=str(tmp_path / "rejoined.png"))

    # The reloaded page asked for the run's stream from the start...
    assert joins, "the reloaded page never joined the run's stream"
    join = joins[0]
    assert f"/threads/{thread_id}/runs/" in join.url
    assert join.headers.get("last-event-id") == "-1", join.headers
    # ...while the run was still going: the reply kept growing on the reloaded page.
    lengths = _lengths(page)
    assert len([n for n in lengths if 0 < n < len(want)]) >= 3, lengths
    assert lengths[-1] == len(want)
    thread = _thread_state(http_server, thread_id)
    assert thread["status"] == "idle"
    assert [m["content"] for m in thread["values"]["messages"]] == ["reload me", want]
