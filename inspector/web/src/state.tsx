import { useEffect, useRef, useState } from "preact/hooks";

import { sse } from "./api";
import type { CheckpointRef, Json, State, StateTask } from "./types";
import { clock, diff, pretty, short } from "./util";

function DiffView(props: { before: Json | undefined; after: Json }) {
  const changes = diff(props.before, props.after);
  if (!changes.length) return <p class="muted">no change to the values</p>;
  return (
    <ul id="state-diff" class="diff">
      {changes.map((c) => (
        <li key={`${c.kind}:${c.path}`} class={`diff-${c.kind}`} data-path={c.path}>
          <code>{c.kind === "added" ? "+" : c.kind === "removed" ? "−" : "~"}</code> <strong>{c.path || "(values)"}</strong>
          {c.kind !== "added" && <pre class="before">{pretty(c.before)}</pre>}
          {c.kind !== "removed" && <pre class="after">{pretty(c.after)}</pre>}
        </li>
      ))}
    </ul>
  );
}

type SubUpdate = { namespace: string; node: string; update: Json };

/** A task that ran a subgraph: opened, it shows the subgraph's own steps (each node's update, and
 * those of deeper subgraphs), read from the run's stored stream with `stream_subgraphs`. */
function SubgraphTask(props: { threadId: string; runId: string; task: StateTask; checkpoint: CheckpointRef }) {
  const [updates, setUpdates] = useState<SubUpdate[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const abort = useRef<AbortController | null>(null);
  useEffect(() => () => abort.current?.abort(), []);
  const namespace = props.checkpoint.checkpoint_ns;
  const open = (event: Event) => {
    if (!(event.currentTarget as HTMLDetailsElement).open || abort.current) return;
    abort.current = new AbortController();
    const seen: SubUpdate[] = [];
    setUpdates(seen);
    const path = `/threads/${props.threadId}/runs/${props.runId}/stream?stream_mode=updates&stream_subgraphs=true`;
    sse(
      path,
      (frame) => {
        const [mode, ...namespaces] = frame.event.split("|");
        if (mode !== "updates" || namespaces[0] !== namespace) return;
        for (const [node, update] of Object.entries((frame.data ?? {}) as Record<string, Json>)) {
          seen.push({ namespace: namespaces.slice(1).join(" / "), node, update });
        }
        setUpdates([...seen]);
      },
      abort.current.signal,
      "-1",
    ).catch((err: Error) => abort.current?.signal.aborted || setError(err.message));
  };
  return (
    <details class="subgraph" data-task={props.task.name} onToggle={open}>
      <summary>
        subgraph of task <strong>{props.task.name}</strong> <span class="muted">{namespace}</span>
      </summary>
      {error && <p class="error">{error}</p>}
      {updates && updates.length === 0 && <p class="muted">no steps yet</p>}
      {updates && (
        <ol class="subgraph-steps">
          {updates.map((u, i) => (
            <li key={i} data-node={u.node}>
              <strong>{u.node}</strong> {u.namespace && <span class="muted">in {u.namespace}</span>}
              <pre>{pretty(u.update)}</pre>
            </li>
          ))}
        </ol>
      )}
    </details>
  );
}

function StateBody(props: { threadId: string; state: State }) {
  const { state } = props;
  const runId = state.metadata?.run_id;
  return (
    <>
      <pre class="values">{pretty(state.values)}</pre>
      {state.next.length > 0 && <p>next: {state.next.join(", ")}</p>}
      {state.tasks.map((task) =>
        task.checkpoint && typeof runId === "string" ? (
          <SubgraphTask
            key={task.id}
            threadId={props.threadId}
            runId={runId}
            task={task}
            checkpoint={task.checkpoint}
          />
        ) : task.error ? (
          <pre key={task.id} class="error">
            {task.name}: {task.error}
          </pre>
        ) : null,
      )}
    </>
  );
}

export function CheckpointsView(props: {
  threadId: string;
  history: State[];
  selected: string | null;
  onSelect: (checkpointId: string) => void;
}) {
  const { history } = props;
  const index = Math.max(
    0,
    history.findIndex((s) => s.checkpoint.checkpoint_id === props.selected),
  );
  const current = history[index];
  const parentId = current?.parent_checkpoint?.checkpoint_id;
  const parent = history.find((s) => s.checkpoint.checkpoint_id === parentId);
  return (
    <div id="checkpoints" class="split">
      <ol class="checkpoint-list">
        {history.map((s) => (
          <li
            key={s.checkpoint.checkpoint_id}
            class={s === current ? "selected" : ""}
            data-checkpoint={s.checkpoint.checkpoint_id ?? ""}
            onClick={() => s.checkpoint.checkpoint_id && props.onSelect(s.checkpoint.checkpoint_id)}
          >
            step {String(s.metadata?.step ?? "?")} <span class="muted">{String(s.metadata?.source ?? "")}</span>{" "}
            <span class="muted">
              {short(s.checkpoint.checkpoint_id)} {clock(s.created_at)}
            </span>
            {s.next.length > 0 && <span class="muted"> → {s.next.join(", ")}</span>}
          </li>
        ))}
      </ol>
      {current && (
        <div class="checkpoint-detail">
          <h4>Changes from the previous checkpoint</h4>
          <DiffView before={parent?.values} after={current.values} />
          <h4>State at step {String(current.metadata?.step ?? "?")}</h4>
          <StateBody threadId={props.threadId} state={current} />
        </div>
      )}
    </div>
  );
}
