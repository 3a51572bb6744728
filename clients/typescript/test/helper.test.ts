// The helper's pure parts; the stubs and followRun run against a live server in tests/clients.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Cursor,
  eventKind,
  fromJson,
  isTerminal,
  reopenSession,
  sessionEvents,
  toJson,
  toOptionalJson,
} from "../src";
import { RunEvent } from "../src/gen/stepstream/v1/events";
import { OpenSession, SessionStreamResponse } from "../src/gen/stepstream/v1/sessions";

function event(runId: string, seq: number, finished = false): RunEvent {
  const kind: RunEvent["kind"] = finished
    ? { $case: "runFinished", runFinished: { valuesJson: "{}", interrupts: [] } }
    : { $case: "superstepFinished", superstepFinished: { step: seq, checkpointId: "c" } };
  return { ...RunEvent.fromPartial({ runId, seq }), kind };
}

test("JSON payloads: present, optional and absent", () => {
  assert.equal(toJson({ query: "x", n: [1, 2] }), '{"query":"x","n":[1,2]}');
  assert.equal(toJson(null), "null");
  assert.equal(toJson(undefined), "null");
  assert.equal(toOptionalJson(undefined), "");
  assert.equal(toOptionalJson("yes"), '"yes"');
  assert.deepEqual(fromJson('{"a":[true,null]}'), { a: [true, null] });
  assert.equal(fromJson(""), undefined);
  assert.throws(() => fromJson("{x"), SyntaxError);
  assert.throws(() => toJson(() => 1), TypeError);
});

test("event kinds use the proto field names", () => {
  assert.equal(eventKind(event("r", 1)), "superstep_finished");
  assert.equal(eventKind(event("r", 2, true)), "run_finished");
  assert.equal(eventKind(RunEvent.fromPartial({ runId: "r", seq: 3 })), "");
  assert.equal(isTerminal(event("r", 1)), false);
  assert.equal(isTerminal(event("r", 2, true)), true);
});

test("the cursor drops what was delivered and everything after the last event", () => {
  const cursor = new Cursor();
  cursor.setSeen("a", 2);
  const fresh = cursor.take([event("a", 1), event("a", 2), event("a", 3), event("b", 1), event("a", 3)]);
  assert.deepEqual(fresh.map((e) => `${e.runId}${e.seq}`), ["a3", "b1"]);
  assert.deepEqual(cursor.unfinished(), { runId: "b", afterSeq: 1 });
  cursor.take([event("b", 2, true), event("b", 3)]);
  assert.equal(cursor.hasEnded("b"), true);
  assert.equal(cursor.seen("b"), 2);
  assert.deepEqual(cursor.unfinished(), { runId: "a", afterSeq: 3 });
});

test("a reopened session continues the latest unfinished run", () => {
  const cursor = new Cursor();
  cursor.take([event("a", 4)]);
  const open = OpenSession.fromPartial({ graphId: "g", eventKinds: [1], subgraphs: true, batchEvents: true });
  const reopen = reopenSession(open, "s1", cursor);
  assert.equal(reopen.sessionId, "s1");
  assert.equal(reopen.graphId, "");
  assert.deepEqual(reopen.eventKinds, [1]);
  assert.equal(reopen.subgraphs, true);
  assert.equal(reopen.batchEvents, true);
  assert.equal(reopen.resumeRunId, "a");
  assert.equal(reopen.afterSeq, 4);
});

test("session responses carry one event, a batch in order, or none", () => {
  const single = SessionStreamResponse.fromPartial({ kind: { $case: "event", event: event("a", 1) } });
  assert.deepEqual(sessionEvents(single)?.map((e) => `${e.runId}${e.seq}`), ["a1"]);
  const batch = SessionStreamResponse.fromPartial({
    kind: { $case: "events", events: { events: [event("a", 2), event("a", 3), event("a", 4, true)] } },
  });
  assert.deepEqual(sessionEvents(batch)?.map((e) => `${e.runId}${e.seq}`), ["a2", "a3", "a4"]);
  assert.equal(isTerminal(sessionEvents(batch)!.at(-1)!), true);
  const empty = SessionStreamResponse.fromPartial({ kind: { $case: "events", events: { events: [] } } });
  assert.deepEqual(sessionEvents(empty), []);
  const answer = SessionStreamResponse.fromPartial({
    requestId: "r1",
    kind: { $case: "run", run: { runId: "a" } },
  });
  assert.equal(sessionEvents(answer), undefined);
  assert.equal(sessionEvents(SessionStreamResponse.fromPartial({})), undefined);
});
