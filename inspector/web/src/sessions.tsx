import { useApi } from "./hooks";
import type { Thread } from "./types";
import { clock } from "./util";

export function SessionsView() {
  const threads = useApi<Thread[]>("/threads/search", [], {
    method: "POST",
    // The list needs no values: the answer stays small with many sessions of big states.
    body: {
      limit: 100,
      sort_by: "updated_at",
      sort_order: "desc",
      select: ["thread_id", "status", "metadata", "updated_at"],
    },
    everyMs: 5000,
  });
  return (
    <section id="sessions">
      <h2>Sessions</h2>
      {threads.error && <p class="error">{threads.error}</p>}
      <table>
        <thead>
          <tr>
            <th>session (thread)</th>
            <th>graph</th>
            <th>status</th>
            <th>updated</th>
          </tr>
        </thead>
        <tbody>
          {(threads.data ?? []).map((t) => (
            <tr key={t.thread_id} data-thread={t.thread_id}>
              <td>
                <a href={`#/threads/${t.thread_id}`}>{t.thread_id}</a>
              </td>
              <td>{String(t.metadata?.graph_id ?? "")}</td>
              <td class={`status status-${t.status}`}>{t.status}</td>
              <td>{clock(t.updated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
