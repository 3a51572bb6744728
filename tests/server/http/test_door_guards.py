"""What the HTTP door refuses, and that refusing changes nothing: a 404/409/422 table, tenant
isolation between two API keys, roles, CORS with Private Network Access, and a fuzz of the
routes with malformed JSON and wrong types (422 or 400, server up, database consistent)."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.http.door import Door, door

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

MISSING = "00000000-0000-4000-8000-000000000000"
HELLO: Any = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    with door(pathlib.Path(tmp_path_factory.mktemp("guards"))) as server:
        yield server


@pytest.fixture(scope="module")
def owned(live: Door) -> dict[str, str]:
    """A thread of alice's with a finished run."""
    with live.http() as http:
        thread_id = http.post("/threads", json={"metadata": {"owner": "alice"}}).json()["thread_id"]
        run = http.post(f"/threads/{thread_id}/runs", json={"assistant_id": "chat", "input": HELLO}).json()
        http.get(f"/threads/{thread_id}/runs/{run['run_id']}/join").raise_for_status()
    return {"thread": thread_id, "run": run["run_id"]}


def _table(t: str, r: str) -> list[tuple[str, str, Any, int]]:
    return [
        ("GET", f"/threads/{MISSING}", None, 404),
        ("GET", "/threads/not-a-uuid", None, 422),
        ("DELETE", f"/threads/{MISSING}", None, 404),
        ("GET", f"/threads/{MISSING}/state", None, 404),
        ("GET", f"/threads/{t}/runs/{MISSING}", None, 404),
        ("GET", f"/threads/{MISSING}/runs/{r}", None, 404),
        ("GET", f"/assistants/{MISSING}", None, 404),
        ("GET", "/assistants/no_such_graph", None, 422),
        ("POST", f"/threads/{t}/runs/{r}/cancel", None, 404),
        ("POST", f"/threads/{MISSING}/runs", {"assistant_id": "chat"}, 404),
        ("POST", f"/threads/{t}/runs", {"assistant_id": "no_such_graph"}, 422),
        ("POST", f"/threads/{t}/runs", {"assistant_id": MISSING}, 404),
        ("POST", f"/threads/{MISSING}/state", {"values": {"turns": 1}}, 404),
        ("POST", "/threads", {"thread_id": t, "if_exists": "raise"}, 409),
        ("POST", "/threads", {"thread_id": t, "if_exists": "do_nothing"}, 200),
        ("POST", f"/threads/{t}/runs", {"input": {}}, 422),
        ("POST", f"/threads/{t}/runs", {"assistant_id": "chat", "stream_mode": "bogus"}, 422),
        ("POST", f"/threads/{t}/runs", {"assistant_id": "chat", "multitask_strategy": "later"}, 422),
        ("POST", f"/threads/{t}/runs", {"assistant_id": "chat", "config": "not an object"}, 422),
        ("POST", f"/threads/{t}/runs", {"assistant_id": "chat", "interrupt_before": ["nope"]}, 422),
        ("POST", "/threads/search", {"limit": "many"}, 422),
        ("POST", "/assistants/search", {"limit": -1}, 422),
        ("POST", f"/threads/{t}/state", {"values": {"turns": 1}, "as_node": "nope"}, 422),
        ("GET", f"/threads/{t}/runs?limit=zero", None, 422),
        ("GET", f"/threads/{t}/runs/{r}/stream", None, 200),
    ]


def test_bad_input_table(live: Door, owned: dict[str, str]) -> None:
    with live.http() as http:
        before = http.get(f"/threads/{owned['thread']}/state").json()
        got = []
        for method, path, body, _ in _table(owned["thread"], owned["run"]):
            response = (
                http.request(method, path, json=body) if body is not None else http.request(method, path)
            )
            got.append(response.status_code)
            if response.status_code >= 400:
                assert isinstance(response.json()["detail"], str) and response.json()["detail"]
        assert got == [status for *_, status in _table(owned["thread"], owned["run"])]
        for raw in (b'{"assistant_id": "chat",', b"[1, 2", b"\xff\xfe"):
            response = http.post(f"/threads/{owned['thread']}/runs", content=raw)
            assert response.status_code == 422 and "JSON" in response.json()["detail"]
        assert http.get(f"/threads/{owned['thread']}/state").json() == before


def test_busy_thread_rejects_and_delete_cancels(live: Door) -> None:
    with live.http() as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "slow", "input": {"ticks": 100, "pace": 0.05}}
        run = http.post(f"/threads/{thread_id}/runs", json=body).json()
        reject = {"assistant_id": "chat", "multitask_strategy": "reject"}
        assert http.post(f"/threads/{thread_id}/runs", json=reject).status_code == 409
        assert http.delete(f"/threads/{thread_id}").status_code == 204
        assert http.get(f"/threads/{thread_id}/runs/{run['run_id']}").status_code == 404


def test_other_tenant_sees_nothing_and_changes_nothing(live: Door, owned: dict[str, str]) -> None:
    t, r = owned["thread"], owned["run"]
    with live.http("alice") as alice, live.http("bob") as bob:
        before = (alice.get(f"/threads/{t}").json(), alice.get(f"/threads/{t}/state").json())
        calls: list[tuple[str, str, Any]] = [
            ("GET", f"/threads/{t}", None),
            ("PATCH", f"/threads/{t}", {"metadata": {"owner": "bob"}}),
            ("DELETE", f"/threads/{t}", None),
            ("GET", f"/threads/{t}/state", None),
            ("POST", f"/threads/{t}/state", {"values": {"turns": 99}}),
            ("GET", f"/threads/{t}/history", None),
            ("POST", f"/threads/{t}/history", {"limit": 5}),
            ("POST", f"/threads/{t}/copy", None),
            ("GET", f"/threads/{t}/runs", None),
            ("POST", f"/threads/{t}/runs", {"assistant_id": "chat", "input": HELLO}),
            ("POST", f"/threads/{t}/runs/wait", {"assistant_id": "chat", "input": HELLO}),
            ("GET", f"/threads/{t}/runs/{r}", None),
            ("GET", f"/threads/{t}/runs/{r}/join", None),
            ("POST", f"/threads/{t}/runs/{r}/cancel", None),
        ]
        for method, path, body in calls:
            response = bob.request(method, path, json=body) if body is not None else bob.request(method, path)
            assert response.status_code == 404, (method, path, response.status_code, response.text)
        stream = bob.get(f"/threads/{t}/runs/{r}/stream")
        assert "event: error" in stream.text and "/runs/" not in stream.headers.get("location", "")
        assert bob.post("/threads/search", json={"metadata": {"owner": "alice"}}).json() == []
        taken = bob.post("/threads", json={"thread_id": t, "if_exists": "do_nothing"})
        assert taken.status_code == 409
        after = (alice.get(f"/threads/{t}").json(), alice.get(f"/threads/{t}/state").json())
        assert after == before


def test_credentials_and_roles(live: Door, owned: dict[str, str]) -> None:
    assert httpx.get(live.url + "/ok").status_code == 200
    assert httpx.post(live.url + "/threads", json={}).status_code == 401
    assert httpx.post(live.url + "/threads", json={}, headers={"x-api-key": "sk_wrong"}).status_code == 401
    with live.http("reader") as reader:
        assert reader.get(f"/threads/{owned['thread']}").status_code == 200
        assert reader.post("/threads/search", json={}).status_code == 200
        assert reader.post("/threads", json={}).status_code == 403
        runs = reader.post(f"/threads/{owned['thread']}/runs", json={"assistant_id": "chat"})
        assert runs.status_code == 403


def test_cors_preflight_allows_studio_on_a_private_network(live: Door) -> None:
    preflight = httpx.options(
        live.url + "/threads",
        headers={
            "Origin": "https://studio.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://studio.example"
    assert preflight.headers["access-control-allow-private-network"] == "true"
    other = httpx.options(
        live.url + "/threads",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    [
        "assistant_id",
        "input",
        "command",
        "stream_mode",
        "config",
        "metadata",
        "multitask_strategy",
        "interrupt_before",
        "limit",
        "offset",
        "status",
        "values",
        "as_node",
        "thread_id",
        "if_exists",
    ]
)
BODIES = st.dictionaries(FIELDS, JSON, max_size=4) | JSON | st.binary(max_size=20)
ROUTES = st.sampled_from(
    [
        ("POST", "/threads"),
        ("POST", "/threads/search"),
        ("POST", "/threads/count"),
        ("PATCH", "/threads/{t}"),
        ("POST", "/threads/{t}/state"),
        ("POST", "/threads/{t}/history"),
        ("POST", "/threads/{t}/runs"),
        ("POST", "/threads/{t}/runs/wait"),
        ("POST", "/assistants/search"),
        ("POST", "/runs/wait"),
    ]
)


def _rows(db: pathlib.Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("sessions", "runs")}


def test_fuzzed_bodies_get_clear_answers_and_keep_the_database_whole(
    live: Door, owned: dict[str, str]
) -> None:
    seen: set[int] = set()
    with live.http() as http:
        fuzz_thread = http.post("/threads", json={"metadata": {"fuzz": True}}).json()["thread_id"]

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(route=ROUTES, body=BODIES)
        def call(route: tuple[str, str], body: Any) -> None:
            method, path = route
            path = path.format(t=fuzz_thread)
            if isinstance(body, bytes):
                response = http.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
            else:
                response = http.request(method, path, json=body)
            seen.add(response.status_code)
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert response.json()["detail"]

        call()
        assert http.get("/ok").status_code == 200
        # Every stored run belongs to a stored session, and no session is left busy without one.
        with sqlite3.connect(live.db_path) as conn:
            orphans = conn.execute(
                "SELECT count(*) FROM runs WHERE session_id NOT IN (SELECT session_id FROM sessions)"
            ).fetchone()[0]
        assert orphans == 0
        assert http.get(f"/threads/{owned['thread']}/state").json()["values"]["turns"] == 1
    assert 422 in seen
