"""Transcripts of calls to a LangGraph-API server, normalised so two servers (or two runs) compare.

A transcript is a list of steps, one per call: the call's label and either its result, the
events of its stream, or the status code and body of its error. Normalising replaces what
differs between runs and servers by placeholders, keeping what a client relies on:

- UUIDs become `<uuid:N>` and 32-hex ids (interrupt ids) `<hex:N>`, numbered by first sight
  within one scenario, so "the run id in `metadata` is the one `runs.get` returns" stays visible.
  Dicts are walked in sorted key order, so the numbering does not depend on a server's key order.
- Timestamps become `<time>`, the server's address `<server>`, version stamps `<version>`.
- SSE event ids keep only their shape (digits become N): `1796588610409-0` is `N-N`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from langgraph_sdk.schema import StreamPart

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX32 = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
SERVER = re.compile(r"(?:https?://)?(?:127\.0\.0\.1|localhost):\d+")
# Values that name the server's or the libraries' versions, or a clock reading: their placeholder.
VOLATILE_KEYS = {
    **dict.fromkeys(
        ("langgraph_version", "langgraph_api_version", "langgraph_plan", "langgraph_host", "lc_versions"),
        "<version>",
    ),
    "__request_start_time_ms__": "<time>",
}


class Normaliser:
    """Placeholders for one scenario: the same id gets the same placeholder throughout."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def _id(self, kind: str, value: str) -> str:
        if value not in self.seen:
            self.seen[value] = f"<{kind}:{sum(1 for v in self.seen.values() if v.startswith('<' + kind))}>"
        return self.seen[value]

    def text(self, value: str) -> str:
        value = TIME.sub("<time>", value)
        value = SERVER.sub("<server>", value)
        value = UUID.sub(lambda m: self._id("uuid", m.group(0)), value)
        return HEX32.sub(lambda m: self._id("hex", m.group(0)), value)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key in sorted(value, key=str):
                name = self.text(str(key))
                out[name] = VOLATILE_KEYS[key] if key in VOLATILE_KEYS else self(value[key])
            return out
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        return value


def event_id_shape(event_id: str | None) -> str | None:
    return None if event_id is None else re.sub(r"\d+", "N", event_id)


@dataclasses.dataclass
class Recorder:
    """Records one scenario's calls through the SDK client and through raw HTTP."""

    name: str
    http: httpx.AsyncClient
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    norm: Normaliser = dataclasses.field(default_factory=Normaliser)

    def note(self, label: str, value: Any) -> None:
        """A fact the scenario derived itself (e.g. "no event was lost or repeated")."""
        self.steps.append({"call": label, "note": self.norm(value)})

    async def call(self, label: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """Await an SDK call; record its result, or its status code and body if it failed."""
        try:
            result = await make()
        except httpx.HTTPStatusError as exc:
            self.steps.append({"call": label, **self._error(exc.response)})
            return None
        self.steps.append({"call": label, "result": self.norm(result)})
        return result

    async def stream(
        self,
        label: str,
        parts: AsyncIterator[StreamPart],
        stop_after: Callable[[StreamPart], bool] | None = None,
    ) -> list[StreamPart]:
        """Read a stream to its end, or until stop_after(part) (then drop the connection)."""
        got: list[StreamPart] = []
        try:
            async for part in parts:
                got.append(part)
                if stop_after is not None and stop_after(part):
                    break
        except httpx.HTTPStatusError as exc:
            self.steps.append({"call": label, "events": self._events(got), **self._error(exc.response)})
            return got
        finally:
            # Closing the generator closes the response: the connection drops here.
            await parts.aclose()  # type: ignore[attr-defined]
        self.steps.append({"call": label, "events": self._events(got)})
        return got

    async def raw(
        self, method: str, path: str, *, json_body: Any = None, content: bytes | None = None, label: str = ""
    ) -> httpx.Response:
        """A plain HTTP call (bad input the SDK would refuse to send); status and body recorded."""
        kwargs: dict[str, Any] = {"content": content} if content is not None else {"json": json_body}
        if content is not None:
            kwargs["headers"] = {"Content-Type": "application/json"}
        response = await self.http.request(method, path, **kwargs)
        sent = content.decode() if content is not None else self.norm(json_body)
        self.steps.append(
            {"call": label or f"{method} {self.norm.text(path)}", "request": sent}
            | {"status": response.status_code, "body": self.norm(_body(response))}
        )
        return response

    def _events(self, parts: list[StreamPart]) -> list[dict[str, Any]]:
        return [
            {"event": self.norm.text(p.event), "data": self.norm(p.data), "id": event_id_shape(p.id)}
            for p in parts
        ]

    def _error(self, response: httpx.Response | None) -> dict[str, Any]:
        if response is None:
            return {"status": None}
        return {"status": response.status_code, "body": self.norm(_body(response))}


def _body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


# -- storage and comparison ---------------------------------------------------------------------


def save(transcripts: dict[str, list[dict[str, Any]]], folder: pathlib.Path, only: bool = False) -> None:
    """Write one file per scenario; unless `only`, the folder then holds exactly these."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        if not only:
            old.unlink()
    for name, steps in transcripts.items():
        text = json.dumps({"scenario": name, "steps": steps}, indent=1, sort_keys=True, ensure_ascii=False)
        (folder / f"{name}.json").write_text(text + "\n")


def load(folder: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        found[data["scenario"]] = data["steps"]
    return found


def compare(
    expected: dict[str, list[dict[str, Any]]], actual: dict[str, list[dict[str, Any]]], limit: int = 20
) -> list[str]:
    """Every difference, as `scenario: path: expected X, got Y` (at most `limit` per scenario)."""
    out: list[str] = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            out.append(f"{name}: scenario missing from the new transcript")
            continue
        if name not in expected:
            out.append(f"{name}: scenario has no reference transcript")
            continue
        found: list[str] = []
        _diff(expected[name], actual[name], "", found)
        out += [f"{name}: {line}" for line in found[:limit]]
        if len(found) > limit:
            out.append(f"{name}: ... and {len(found) - limit} more differences")
    return out


def _diff(expected: Any, actual: Any, path: str, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"{where}: missing (expected {_short(expected[key])})")
            elif key not in expected:
                out.append(f"{where}: unexpected {_short(actual[key])}")
            else:
                _diff(expected[key], actual[key], where, out)
        return
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            label = e.get("call") if isinstance(e, dict) and "call" in e else None
            _diff(e, a, f"{path}[{i}{' ' + label if label else ''}]", out)
        if len(expected) != len(actual):
            extra = actual[len(expected) :] or expected[len(actual) :]
            which = "unexpected" if len(actual) > len(expected) else "missing"
            out.append(f"{path}: {len(expected)} items expected, got {len(actual)}; {which}: {_short(extra)}")
        return
    if expected != actual:
        out.append(f"{path}: expected {_short(expected)}, got {_short(actual)}")


def _short(value: Any, width: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def summarise(steps: list[dict[str, Any]]) -> list[str]:
    """One line per step: a stream's event names in order (`name xN` for N in a row, `#N-N` an
    event id's shape), an error's status code and detail, a result's status, a note."""
    lines = []
    for step in steps:
        call = step["call"]
        if "events" in step:
            names: list[list[Any]] = []
            for event in step["events"]:
                name = event["event"] + (f"#{event['id']}" if event["id"] else "")
                if names and names[-1][0] == name:
                    names[-1][1] += 1
                else:
                    names.append([name, 1])
            shown = " ".join(name if n == 1 else f"{name} x{n}" for name, n in names)
            lines.append(f"{call}: {shown}" + (f" then {step['status']}" if "status" in step else ""))
        elif "status" in step:
            body = step.get("body")
            detail = body.get("detail", body) if isinstance(body, dict) else body
            sent = f" {_short(step['request'], 100)}" if step.get("request") is not None else ""
            lines.append(f"{call}{sent}: {step['status']} {_short(detail, 120)}")
        elif "note" in step:
            lines.append(f"{call}: {_short(step['note'], 200)}")
        else:
            result = step["result"]
            status = result.get("status") if isinstance(result, dict) else None
            kind = f"list of {len(result)}" if isinstance(result, list) else type(result).__name__
            lines.append(f"{call}: {kind}" + (f" status={status}" if status else ""))
    return lines
