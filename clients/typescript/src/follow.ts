// A run's events through JoinRun, rejoined from the last seq seen when the stream breaks.
import { ClientReadableStream, Metadata, ServiceError, status } from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";

import { Cursor } from "./events";
import { RunEvent } from "./gen/stepstream/v1/events";
import { JoinRunRequest, RunServiceClient, RunStatus } from "./gen/stepstream/v1/runs";

export interface FollowOptions {
  /** Time spent reconnecting without receiving an event before giving up (default 30 000 ms). */
  reconnectTimeoutMs?: number;
  /** First pause between attempts, doubling up to maxDelayMs (defaults 50 and 2 000 ms). */
  firstDelayMs?: number;
  maxDelayMs?: number;
}

// Milliseconds to wait for the server to close a stream whose run's last event has come.
const CLOSE_MS = 1_000;

const ENDED = new Set([
  RunStatus.RUN_STATUS_SUCCEEDED,
  RunStatus.RUN_STATUS_INTERRUPTED,
  RunStatus.RUN_STATUS_FAILED,
  RunStatus.RUN_STATUS_CANCELLED,
]);

function isServiceError(error: unknown): error is ServiceError {
  return typeof error === "object" && error !== null && "code" in error && "details" in error;
}

function unavailable(details: string): ServiceError {
  const error = new Error(`${status.UNAVAILABLE} UNAVAILABLE: ${details}`);
  return Object.assign(error, { code: status.UNAVAILABLE, details, metadata: new Metadata() });
}

/**
 * Stream a run's events from `request.afterSeq` until its last event. When the
 * stream breaks (UNAVAILABLE, or a clean end before the run has ended, as a
 * draining replica does) it joins again from the last seq delivered, so every
 * event arrives once, in order. Any other error is thrown.
 *
 *     for await (const event of followRun(runs, { runId })) console.log(event.seq, eventKind(event));
 */
export async function* followRun(
  client: RunServiceClient,
  request: Partial<JoinRunRequest> & { runId: string },
  options: FollowOptions = {},
): AsyncGenerator<RunEvent> {
  const reconnectTimeoutMs = options.reconnectTimeoutMs ?? 30_000;
  const firstDelayMs = options.firstDelayMs ?? 50;
  const maxDelayMs = options.maxDelayMs ?? 2_000;
  const cursor = new Cursor();
  const runId = request.runId;
  cursor.setSeen(runId, request.afterSeq ?? 0);
  let brokenSince: number | undefined;
  let delay = firstDelayMs;
  for (;;) {
    const call = client.joinRun(JoinRunRequest.fromPartial({ ...request, afterSeq: cursor.seen(runId) }));
    // Listened for from the start: the status may come before the loop has the last event.
    const closed = new Promise<void>((resolve) => call.once("status", () => resolve()));
    let failure: unknown;
    try {
      for await (const response of call) {
        const events = cursor.take(response.events);
        const ended = cursor.hasEnded(runId);
        if (ended) {
          await closedByServer(call, closed);
        }
        for (const event of events) {
          brokenSince = undefined;
          delay = firstDelayMs;
          yield event;
        }
        if (ended) {
          return;
        }
      }
      // A clean end before the run's last event: over only if the run has ended and nothing is left.
      failure = (await runIsOver(client, runId, cursor.seen(runId)))
        ? undefined
        : unavailable(`the event stream of run ${runId} ended before the run`);
    } catch (error) {
      failure = error;
    } finally {
      call.cancel();
    }
    if (failure === undefined) {
      return;
    }
    if (!isServiceError(failure) || failure.code !== status.UNAVAILABLE) {
      throw failure;
    }
    brokenSince ??= Date.now();
    if (Date.now() - brokenSince >= reconnectTimeoutMs) {
      throw failure;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, maxDelayMs);
  }
}

/**
 * Waits for the server to close a stream after the run's last event, before that event is
 * delivered (a caller may stop there). The server closes the stream right after that event;
 * cancelling the call first instead costs both sides a reset HTTP/2 stream and the server a
 * cancelled handler. A close later than CLOSE_MS is not waited for: the call is cancelled, which
 * ends it with a CANCELLED status.
 */
async function closedByServer(call: ClientReadableStream<unknown>, closed: Promise<void>): Promise<void> {
  const late = setTimeout(() => call.cancel(), CLOSE_MS);
  await closed;
  clearTimeout(late);
}

async function runIsOver(client: RunServiceClient, runId: string, seen: number): Promise<boolean> {
  return new Promise((resolve) => {
    client.getRun({ runId }, (error, response) => {
      const run = response?.run;
      resolve(!error && run !== undefined && ENDED.has(run.status) && run.lastSeq <= seen);
    });
  });
}
