// Event kinds, and a cursor that makes a reopened stream deliver each event once.
import { RunEvent } from "./gen/stepstream/v1/events";
import { OpenSession, SessionStreamResponse } from "./gen/stepstream/v1/sessions";

const TERMINAL = new Set(["runFinished", "runFailed", "runCancelled"]);

/** The proto name of the event's oneof field, e.g. "task_finished" ("" for a kind newer than these stubs). */
export function eventKind(event: RunEvent): string {
  const name = event.kind?.$case ?? "";
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** True for a run's last event: finished, failed or cancelled. */
export function isTerminal(event: RunEvent): boolean {
  return TERMINAL.has(event.kind?.$case ?? "");
}

/**
 * The run events a session stream response carries, in order: one for `event`,
 * all of a batch for `events` (streams opened with batchEvents); undefined for
 * any other response (the answers to actions).
 */
export function sessionEvents(response: SessionStreamResponse): RunEvent[] | undefined {
  switch (response.kind?.$case) {
    case "event":
      return [response.kind.event];
    case "events":
      return response.kind.events.events;
    default:
      return undefined;
  }
}

/** The last seq delivered of each run; drops events seen already. */
export class Cursor {
  private readonly seq = new Map<string, number>();
  private readonly ended = new Set<string>();

  seen(runId: string): number {
    return this.seq.get(runId) ?? 0;
  }

  setSeen(runId: string, seq: number): void {
    this.seq.set(runId, seq);
  }

  hasEnded(runId: string): boolean {
    return this.ended.has(runId);
  }

  /** The events not delivered before, now recorded as delivered. */
  take(events: Iterable<RunEvent>): RunEvent[] {
    const fresh: RunEvent[] = [];
    for (const event of events) {
      if (this.ended.has(event.runId) || event.seq <= this.seen(event.runId)) {
        continue;
      }
      this.seq.set(event.runId, event.seq);
      if (isTerminal(event)) {
        this.ended.add(event.runId);
      }
      fresh.push(event);
    }
    return fresh;
  }

  /** The run seen last whose final event has not come, with its last seq. */
  unfinished(): { runId: string; afterSeq: number } | undefined {
    const open = [...this.seq.keys()].filter((runId) => !this.ended.has(runId));
    const runId = open.at(-1);
    return runId === undefined ? undefined : { runId, afterSeq: this.seen(runId) };
  }
}

/**
 * The OpenSession that continues a broken session stream: the same options on
 * the session it opened, with the latest unfinished run's events after the last seq seen.
 */
export function reopenSession(open: OpenSession, sessionId: string, cursor: Cursor): OpenSession {
  const unfinished = cursor.unfinished();
  return OpenSession.fromPartial({
    sessionId,
    eventKinds: open.eventKinds,
    subgraphs: open.subgraphs,
    batchEvents: open.batchEvents,
    resumeRunId: unfinished?.runId ?? "",
    afterSeq: unfinished?.afterSeq ?? 0,
  });
}
