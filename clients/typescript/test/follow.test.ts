// followRun at a run's last event, over a stand-in for grpc-js's JoinRun call.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";

import { Metadata, status } from "@grpc/grpc-js";

import { followRun, isTerminal } from "../src";
import { RunEvent } from "../src/gen/stepstream/v1/events";
import { JoinRunResponse, RunServiceClient } from "../src/gen/stepstream/v1/runs";

function event(seq: number, finished = false): RunEvent {
  const kind: RunEvent["kind"] = finished
    ? { $case: "runFinished", runFinished: { valuesJson: "{}", interrupts: [] } }
    : { $case: "superstepFinished", superstepFinished: { step: seq, checkpointId: "c" } };
  return { ...RunEvent.fromPartial({ runId: "r", seq }), kind };
}

/** Sends its responses, then the server's close soon after, or with stayOpen none: only a cancel ends it. */
class FakeCall extends Readable {
  closed = false; // the call's status came
  cancelled = false; // by cancel()

  constructor(responses: JoinRunResponse[], stayOpen: boolean) {
    super({ objectMode: true, read() {} });
    responses.forEach((response) => this.push(response));
    if (!stayOpen) {
      setTimeout(() => this.end(status.OK, "OK"), 50);
    }
  }

  cancel(): void {
    if (!this.closed) {
      this.cancelled = true;
      this.end(status.CANCELLED, "Cancelled on client");
    }
  }

  // As grpc-js ends a call: the end of the messages, an error unless OK, then the status.
  private end(code: status, details: string): void {
    this.closed = true;
    this.push(null);
    if (code !== status.OK) {
      this.emit("error", Object.assign(new Error(details), { code, details, metadata: new Metadata() }));
    }
    this.emit("status", { code, details, metadata: new Metadata() });
  }
}

/** Follows a run of three events, stopping at the last; how the call stood when it was delivered. */
async function followFake(stayOpen: boolean) {
  const call = new FakeCall([{ events: [event(1)] }, { events: [event(2), event(3, true)] }], stayOpen);
  const client = { joinRun: () => call } as unknown as RunServiceClient;
  const seqs: number[] = [];
  for await (const event of followRun(client, { runId: "r" })) {
    seqs.push(event.seq);
    if (isTerminal(event)) {
      return { seqs, closed: call.closed, cancelled: call.cancelled };
    }
  }
  assert.fail(`followRun ended after ${seqs} without the last event`);
}

test("the last event waits for the server's close, and the call is not cancelled", { timeout: 5_000 }, async () => {
  assert.deepEqual(await followFake(false), { seqs: [1, 2, 3], closed: true, cancelled: false });
});

test("a call left open after the last event is cancelled after a second", { timeout: 5_000 }, async () => {
  const start = Date.now();
  assert.deepEqual(await followFake(true), { seqs: [1, 2, 3], closed: true, cancelled: true });
  const waited = Date.now() - start;
  assert.ok(waited >= 990 && waited < 2_000, `gave up on the close after ${waited} ms`);
});
