import { useState } from "preact/hooks";

import { api } from "./api";
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

/** A task that ran a subgraph: its own checkpoint, fetched when opened. */
function SubgraphTask(props: { threadId: string; task: StateTask; checkpoint: CheckpointRef }) {
  const [state, setState] = useState<State | null>(null);
  const [error, setError] = useState<string | null>(null);
  const open = (event: Event) => {
    if (!(event.currentTarget as HTMLDetailsElement).open || state) return;
    api<State>(`/threads/${props.threadId}/state/checkpoint`, {
      method: "POST",
      body: { checkpoint: props.checkpoint, subgraphs: true },
    })
      .then(setState)
      .catch((err: Error) => setError(err.message));
  };
  return (
    <details class="subgraph" data-task={props.task.name} onToggle={open}>
      <summary>
        subgraph of task <strong>{props.task.name}</strong> <span class="muted">{props.checkpoint.checkpoint_ns}</span>
      </summary>
      {error && <p class="error">{error}</p>}
      {state && <StateBody threadId={props.threadId} state={state} />}
    </details>
  );
}

function StateBody(props: { threadId: string; state: State }) {
  const { state } = props;
  return (
    <>
      <pre class="values">{pretty(state.values)}</pre>
      {state.next.length > 0 && <p>next: {state.next.join(", ")}</p>}
      {state.tasks.map((task) =>
        task.checkpoint ? (
          <SubgraphTask key={task.id} threadId={props.threadId} task={task} checkpoint={task.checkpoint} />
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
