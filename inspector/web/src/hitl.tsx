import { useState } from "preact/hooks";

import { api } from "./api";
import type { Json, Run, Thread } from "./types";
import { parseLoose, pretty } from "./util";

/** A pending interrupt: its payload, and the two ways to answer it from the page. Either way a
 * new run resumes the session (its busy policy, `multitaskStrategy`, is the session's). */
export function InterruptPanel(props: {
  thread: Thread;
  graphId: string;
  multitaskStrategy: string;
  onStarted: (run: Run) => void;
}) {
  const pending = Object.values(props.thread.interrupts ?? {}).flat();
  const [resume, setResume] = useState("");
  const [update, setUpdate] = useState("{}");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (!pending.length) return null;
  const start = (command: { resume: Json; update?: Json }) => {
    setBusy(true);
    api<Run>(`/threads/${props.thread.thread_id}/runs`, {
      method: "POST",
      body: {
        assistant_id: props.graphId,
        command,
        stream_mode: ["values", "updates", "messages-tuple"],
        multitask_strategy: props.multitaskStrategy,
      },
    })
      .then((run) => {
        setError(null);
        props.onStarted(run);
      })
      .catch((err: Error) => setError(err.message))
      .finally(() => setBusy(false));
  };
  const editAndContinue = () => {
    let values: Json;
    try {
      values = JSON.parse(update) as Json;
    } catch (err) {
      setError(`the state update is not JSON: ${(err as Error).message}`);
      return;
    }
    start({ resume: parseLoose(resume), update: values });
  };
  return (
    <section id="interrupt" class="panel attention">
      <h3>Waiting for an answer</h3>
      {pending.map((i, n) => (
        <pre key={i.id ?? n} class="interrupt-payload">
          {pretty(i.value)}
        </pre>
      ))}
      <label>
        Resume value (JSON, or plain text)
        <textarea id="resume-value" rows={2} value={resume} onInput={(e) => setResume(e.currentTarget.value)} />
      </label>
      <button id="resume" disabled={busy} onClick={() => start({ resume: parseLoose(resume) })}>
        Resume
      </button>
      <details>
        <summary>Edit the state, then continue</summary>
        <label>
          State update (JSON object of keys to write, through the graph's reducers)
          <textarea id="state-update" rows={4} value={update} onInput={(e) => setUpdate(e.currentTarget.value)} />
        </label>
        <button id="update-and-resume" disabled={busy} onClick={editAndContinue}>
          Update and continue
        </button>
      </details>
      {error && <p class="error">{error}</p>}
    </section>
  );
}
