import { useEffect, useRef, useState } from "preact/hooks";

import { api } from "./api";
import { useApi } from "./hooks";
import { InterruptPanel } from "./hitl";
import { LiveOutput } from "./live";
import { CheckpointsView } from "./state";
import { TimelineView } from "./timeline";
import { jaegerLink, TraceView } from "./trace";
import type { Config, Run, State, Thread, Timeline } from "./types";
import { clock, go, short } from "./util";

const ACTIVE = new Set(["pending", "running"]);

/** Calls `fn` at most every `waitMs` (trailing call kept): stream frames can come by the hundred. */
function useThrottled(fn: () => void, waitMs: number): () => void {
  const last = useRef(0);
  const timer = useRef<number | undefined>(undefined);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return () => {
    const wait = last.current + waitMs - Date.now();
    if (wait <= 0) {
      last.current = Date.now();
      latest.current();
    } else if (timer.current === undefined) {
      timer.current = window.setTimeout(() => {
        timer.current = undefined;
        last.current = Date.now();
        latest.current();
      }, wait);
    }
  };
}

export function SessionView(props: { threadId: string; runId: string | null; config: Config | null }) {
  const { threadId } = props;
  const thread = useApi<Thread>(`/threads/${threadId}`, [], { everyMs: 3000 });
  const runs = useApi<Run[]>(`/threads/${threadId}/runs?limit=50`, [], { everyMs: 3000 });
  const runList = runs.data ?? [];
  const runId = props.runId ?? runList[0]?.run_id ?? null;
  const run = runList.find((r) => r.run_id === runId) ?? null;
  const active = run !== null && ACTIVE.has(run.status);
  // While the run goes on, its stream's updates refresh the timeline; the poll catches what
  // a stream does not say (a takeover, a task still running).
  const timeline = useApi<Timeline>(runId ? `/inspector/runs/${runId}/timeline` : null, [runId, active], {
    everyMs: active ? 2000 : undefined,
  });
  const history = useApi<State[]>(`/threads/${threadId}/history`, [], { method: "POST", body: { limit: 100 } });
  const [checkpoint, setCheckpoint] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);

  const refreshProgress = useThrottled(() => {
    timeline.reload();
    history.reload();
  }, 500);
  const refreshAll = () => {
    timeline.reload();
    history.reload();
    thread.reload();
    runs.reload();
  };

  const graphId = String(thread.data?.metadata?.graph_id ?? run?.metadata?.graph_id ?? run?.assistant_id ?? "");
  // The session's busy policy: the one its latest run was started with.
  const policy = runList[0]?.multitask_strategy ?? "enqueue";
  const cancel = (action: "interrupt" | "rollback") => {
    if (!run) return;
    api(`/threads/${threadId}/runs/${run.run_id}/cancel?action=${action}&wait=true`, { method: "POST" })
      .then(() => setActionError(null))
      .catch((err: Error) => setActionError(err.message))
      .finally(refreshAll);
  };
  const traceId = timeline.data?.run.trace_id ?? run?.trace_id;
  const jaeger = jaegerLink(props.config, traceId);

  return (
    <section id="session" data-thread={threadId}>
      <h2>
        Session <code>{threadId}</code>{" "}
        <span id="thread-status" class={`status status-${thread.data?.status ?? ""}`}>
          {thread.data?.status ?? "…"}
        </span>
      </h2>
      <p class="muted">
        graph {graphId || "?"} · busy policy <span id="busy-policy">{policy}</span>
      </p>
      {thread.error && <p class="error">{thread.error}</p>}
      <div class="split">
        <aside>
          <h3>Runs</h3>
          <ol id="runs">
            {runList.map((r) => (
              <li key={r.run_id} class={r.run_id === runId ? "selected" : ""} data-run={r.run_id} data-status={r.status}>
                <a href={`#/threads/${threadId}/runs/${r.run_id}`}>{short(r.run_id)}</a>{" "}
                <span class={`status status-${r.status}`}>{r.status}</span>{" "}
                <span class="muted">{clock(r.created_at)}</span>
              </li>
            ))}
          </ol>
        </aside>
        <div class="main">
          {thread.data && (
            <InterruptPanel
              thread={thread.data}
              graphId={graphId}
              multitaskStrategy={policy}
              onStarted={(started) => {
                refreshAll();
                go(`#/threads/${threadId}/runs/${started.run_id}`);
              }}
            />
          )}
          {run && (
            <div class="run-head">
              <h3>
                Run <code id="run-id">{run.run_id}</code>{" "}
                <span id="run-status" class={`status status-${run.status}`}>
                  {run.status}
                </span>
              </h3>
              {timeline.data?.run.replica && <span class="muted">on {timeline.data.run.replica} </span>}
              {jaeger && (
                <a href={jaeger} target="_blank" rel="noreferrer">
                  trace in Jaeger
                </a>
              )}
              {active && (
                // The button matching the session's busy policy comes first.
                <span class="actions">
                  {(policy === "rollback" ? ["rollback", "interrupt"] : ["interrupt", "rollback"]).map((a) => (
                    <button
                      key={a}
                      id={a === "rollback" ? "rollback" : "cancel"}
                      class={a === (policy === "rollback" ? "rollback" : "interrupt") ? "primary" : ""}
                      onClick={() => cancel(a as "interrupt" | "rollback")}
                    >
                      {a === "rollback" ? "Roll back" : "Cancel"}
                    </button>
                  ))}
                </span>
              )}
              {actionError && <p class="error">{actionError}</p>}
            </div>
          )}
          <h3>Supersteps</h3>
          {timeline.error && <p class="error">Timeline: {timeline.error}</p>}
          {timeline.data && (
            <TimelineView timeline={timeline.data} selectedCheckpoint={checkpoint} onSelect={setCheckpoint} />
          )}
          {run && (
            <>
              <h3>Tokens</h3>
              <LiveOutput key={run.run_id} threadId={threadId} runId={run.run_id} onProgress={refreshProgress} onEnd={refreshAll} />
            </>
          )}
          <h3>State</h3>
          {history.error && <p class="error">{history.error}</p>}
          {history.data && (
            <CheckpointsView threadId={threadId} history={history.data} selected={checkpoint} onSelect={setCheckpoint} />
          )}
          {run && (
            <>
              <h3>Trace</h3>
              <TraceView key={run.run_id} runId={run.run_id} config={props.config} traceId={traceId} />
            </>
          )}
        </div>
      </div>
    </section>
  );
}
