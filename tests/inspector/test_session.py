"""A session in the inspector, in headless Chromium against a live server (tests/inspector/conftest.py):
an interrupt answered from the page resumes the run, tokens stream into the page as they come,
each checkpoint's state shows its diff to the previous one, and with authentication on the page
asks for a key and every data call carries it in a header, never in a URL."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Request

from tests.graphs.http_graphs import SLOW_CHAT_WORDS, chat_reply
from tests.inspector.conftest import API_KEY, Live, serve

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

Shoot = Callable[..., pathlib.Path]
CLARIFIED = "transformers in recent research"


def _started(live: Live, graph_id: str, payload: dict[str, Any], **run: Any) -> tuple[str, str]:
    """A new thread and a run of `graph_id` on it, not waited for: (thread id, run id)."""
    with live.http() as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": graph_id, "input": payload, **run}
        started = http.post(f"/threads/{thread_id}/runs", json=body)
        started.raise_for_status()
        return thread_id, started.json()["run_id"]


def _joined(live: Live, thread_id: str, run_id: str) -> None:
    with live.http() as http:
        http.get(f"/threads/{thread_id}/runs/{run_id}/join").raise_for_status()


def _thread(live: Live, thread_id: str) -> dict[str, Any]:
    with live.http() as http:
        return dict(http.get(f"/threads/{thread_id}").json())


def test_an_interrupt_answered_from_the_page_resumes_the_run(page: Page, live: Live, shoot: Shoot) -> None:
    thread_id, run_id = _started(live, "research_assistant", {"query": "transformers"})
    _joined(live, thread_id, run_id)
    assert _thread(live, thread_id)["status"] == "interrupted"

    page.goto(f"{live.url}/ui/#/threads/{thread_id}")
    payload = page.wait_for_selector("#interrupt .interrupt-payload")
    assert payload is not None and "What exactly should I research?" in payload.inner_text()
    page.fill("#resume-value", CLARIFIED)
    shoot("interrupt")
    page.click("#resume")

    # The page follows the run it started: a second run, which goes on to the answer.
    page.wait_for_function(
        "(first) => { const id = document.querySelector('#run-id')?.textContent;"
        " return id && id !== first && document.querySelector('#run-status')?.textContent === 'success'; }",
        arg=run_id,
    )
    page.wait_for_selector("#interrupt", state="detached")
    answer = page.wait_for_selector('#live .message[data-node="synthesize"] .tokens')
    assert answer is not None
    page.wait_for_function(
        "(want) => document.querySelector('#live .message[data-node=\"synthesize\"] .tokens')"
        "?.textContent.startsWith(want)",
        arg=f'Here is what I found on "{CLARIFIED}"',
    )
    # The newest checkpoint's diff names what the resumed run wrote.
    page.wait_for_selector('#state-diff li[data-path="answer"]')
    page.wait_for_function("document.querySelector('#thread-status')?.textContent === 'idle'")
    shoot("session")
    thread = _thread(live, thread_id)
    assert thread["status"] == "idle"
    assert thread["values"]["query"] == CLARIFIED
    assert thread["values"]["answer"].startswith(f'Here is what I found on "{CLARIFIED}"')


def test_tokens_stream_into_the_page_as_they_come(page: Page, live: Live) -> None:
    # Every change of the streamed text is recorded as it is rendered.
    page.add_init_script(
        """window.__lengths = [];
        new MutationObserver(() => {
          const tokens = document.querySelector('#live .message[data-node="model"] .tokens');
          if (tokens && tokens.textContent.length !== window.__lengths.at(-1))
            window.__lengths.push(tokens.textContent.length);
        }).observe(document, {subtree: true, childList: true, characterData: true});"""
    )
    said = "stream to the inspector"
    messages = {"messages": [{"role": "user", "content": said}]}
    thread_id, run_id = _started(live, "slow_chat", messages, stream_mode=["messages-tuple"])
    page.goto(f"{live.url}/ui/#/threads/{thread_id}/runs/{run_id}")
    want = chat_reply(said, SLOW_CHAT_WORDS)
    page.wait_for_function(
        "(want) => document.querySelector('#live .message[data-node=\"model\"] .tokens')"
        "?.textContent === want",
        arg=want,
    )
    lengths: list[int] = page.evaluate("window.__lengths")
    partial = [n for n in lengths if 0 < n < len(want)]
    # The reply grew on the page token by token; it did not arrive whole.
    assert len(partial) >= SLOW_CHAT_WORDS // 2, lengths
    assert partial == sorted(partial), lengths
    page.wait_for_selector("#live[data-ended=true]")


@pytest.fixture(scope="module")
def locked(mockapi: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serve(tmp_path_factory.mktemp("locked"), mockapi, key=True) as server:
        yield server


def test_with_auth_on_the_page_asks_for_a_key_and_sends_it_in_headers(
    page: Page, locked: Live, shoot: Shoot
) -> None:
    thread_id, run_id = _started(
        locked, "research_assistant", {"query": "sparse attention in recent research"}
    )
    _joined(locked, thread_id, run_id)
    with httpx.Client(base_url=locked.url) as anonymous:
        assert anonymous.post("/threads/search", json={}).status_code == 401

    calls: list[Request] = []
    page.on("request", lambda r: calls.append(r) if "/ui/" not in r.url else None)
    page.goto(f"{locked.url}/ui/#/sessions")
    page.wait_for_selector("#sign-in")
    shoot("sign-in")
    page.fill("#credential", API_KEY)
    page.click("#sign-in-button")
    page.wait_for_selector(f'#sessions tr[data-thread="{thread_id}"]')
    page.click(f'#sessions tr[data-thread="{thread_id}"] a')
    page.wait_for_selector("#checkpoints li[data-checkpoint]")
    page.wait_for_selector('#live .message[data-node="synthesize"]')

    assert page.evaluate("sessionStorage.getItem('stepstream.inspector.credential')") is not None
    data_calls = [r for r in calls if r.url.startswith(locked.url)]
    paths = {r.url.removeprefix(locked.url).split("?")[0] for r in data_calls}
    assert "/threads/search" in paths and f"/threads/{thread_id}/history" in paths, paths
    assert any(p.endswith(f"/runs/{run_id}/stream") for p in paths), paths
    for request in data_calls:
        assert API_KEY not in request.url, request.url
    # Before the key: refused calls without it; after: every call carries it.
    keyed = [r for r in data_calls if r.headers.get("x-api-key") == API_KEY]
    assert keyed, "no data call carried the key"
    first_keyed = data_calls.index(keyed[0])
    assert all(r.headers.get("x-api-key") == API_KEY for r in data_calls[first_keyed:]), [
        (r.url, r.headers.get("x-api-key")) for r in data_calls[first_keyed:]
    ]


def test_a_subgraph_opens_into_its_own_steps(page: Page, live: Live) -> None:
    thread_id, run_id = _started(live, "nested", {})
    _joined(live, thread_id, run_id)
    page.goto(f"{live.url}/ui/#/threads/{thread_id}/runs/{run_id}")
    # The checkpoint whose next task is the subgraph `child`.
    page.click('#checkpoints li[data-checkpoint]:has-text("→ child")')
    subgraph = page.wait_for_selector('details.subgraph[data-task="child"]')
    assert subgraph is not None
    subgraph.click()  # the summary: opens it
    page.wait_for_selector('details.subgraph[data-task="child"] li[data-node="inner_b"]')
    nodes = page.eval_on_selector_all(
        'details.subgraph[data-task="child"] li[data-node]', "els => els.map(e => e.dataset.node)"
    )
    assert nodes == ["inner_a", "inner_b"]
    # The parent's own nodes are not the subgraph's steps.
    assert "before" not in nodes and "after" not in nodes


def test_edit_the_state_then_continue(page: Page, live: Live) -> None:
    messages = {"messages": [{"role": "user", "content": "ship it"}]}
    thread_id, run_id = _started(live, "approve", messages)
    _joined(live, thread_id, run_id)
    page.goto(f"{live.url}/ui/#/threads/{thread_id}")
    page.wait_for_selector("#interrupt")
    page.click("#interrupt details summary")
    page.fill("#state-update", '{"messages": [{"role": "user", "content": "and mind the budget"}]}')
    page.fill("#resume-value", '"yes, within budget"')
    page.click("#update-and-resume")
    page.wait_for_function("document.querySelector('#thread-status')?.textContent === 'idle'")
    page.wait_for_selector("#interrupt", state="detached")
    values = _thread(live, thread_id)["values"]
    assert values["approved"] == "yes, within budget"
    said = [m["content"] for m in values["messages"]]
    assert said[:2] == ["ship it", "and mind the budget"], said
    assert said[-1] == "Approved: yes, within budget. Carrying on with the plan now."


def _wait_values(live: Live, thread_id: str, ready: Callable[[Any], bool]) -> None:
    with live.http() as http:
        for _ in range(300):
            if ready(http.get(f"/threads/{thread_id}/state").json()["values"]):
                return
            time.sleep(0.1)
    raise AssertionError(f"thread {thread_id} never reached the state waited for")


@pytest.mark.parametrize("policy", ["enqueue", "rollback"])
def test_cancel_and_rollback_follow_the_busy_policy(page: Page, live: Live, policy: str) -> None:
    thread_id, run_id = _started(live, "steps", {"count": 30, "pace": 0.3}, multitask_strategy=policy)
    _wait_values(live, thread_id, lambda values: len((values or {}).get("done", [])) >= 1)
    page.goto(f"{live.url}/ui/#/threads/{thread_id}/runs/{run_id}")
    page.wait_for_selector("#cancel")
    assert page.inner_text("#busy-policy") == policy
    # The policy's own action is the primary button.
    primary = "#rollback" if policy == "rollback" else "#cancel"
    assert "primary" in (page.get_attribute(primary, "class") or "")
    page.click(primary)
    page.wait_for_function("document.querySelector('#run-status')?.textContent === 'interrupted'")
    page.wait_for_selector("#cancel", state="detached")
    values = _thread(live, thread_id)["values"]
    if policy == "rollback":
        # Rolled back: the run's checkpoints are gone with it.
        assert not (values or {}).get("done"), values
    else:
        assert len(values["done"]) >= 1, values
