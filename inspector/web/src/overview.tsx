import { useState } from "preact/hooks";

import { useSse } from "./hooks";
import type { Overview } from "./types";
import { clock, short } from "./util";

export function OverviewView() {
  const [overview, setOverview] = useState<Overview | null>(null);
  const [updates, setUpdates] = useState(0);
  const error = useSse(
    "/inspector/overview/stream",
    (event) => {
      if (event.event !== "overview") return;
      setOverview(event.data as Overview);
      setUpdates((n) => n + 1);
    },
    [],
    { reconnect: true },
  );
  return (
    <section id="overview" data-updates={updates}>
      <h2>Overview</h2>
      {error && <p class="error">Live feed: {error}</p>}
      {!overview ? (
        <p class="muted">waiting for the live feed…</p>
      ) : (
        <>
          <div class="cards">
            <Card id="runs-per-second" label="runs / s" value={overview.runs_per_second.toFixed(1)} />
            <Card id="running" label="running" value={String(overview.running)} />
            <Card id="queued" label="queued" value={String(overview.queued)} />
            <Card id="replica-count" label="replicas alive" value={String(overview.replicas.filter((r) => r.alive).length)} />
          </div>
          <p class="muted">as of {clock(overview.at)}</p>
          <h3>Replicas</h3>
          <table id="replicas">
            <thead>
              <tr>
                <th>replica</th>
                <th>state</th>
                <th>running</th>
                <th>queued</th>
                <th>leases</th>
                <th>heartbeat</th>
                <th>started</th>
              </tr>
            </thead>
            <tbody>
              {overview.replicas.map((r) => (
                <tr key={r.name} data-replica={r.name} class={r.alive ? "" : "dead"}>
                  <td>{r.name}</td>
                  <td class="replica-state">{!r.alive ? "gone" : r.draining ? "draining" : "serving"}</td>
                  <td class="running">{r.running}</td>
                  <td class="queued">{r.queued}</td>
                  <td class="leases">{r.leases}</td>
                  <td>{clock(r.heartbeat_at)}</td>
                  <td>{clock(r.started_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Busiest graphs</h3>
          <table id="graphs">
            <thead>
              <tr>
                <th>graph</th>
                <th>running</th>
                <th>queued</th>
                <th>finished / min</th>
                <th>errors / min</th>
              </tr>
            </thead>
            <tbody>
              {overview.graphs.map((g) => (
                <tr key={g.graph_id} data-graph={g.graph_id}>
                  <td>{g.graph_id}</td>
                  <td class="running">{g.running}</td>
                  <td class="queued">{g.queued}</td>
                  <td class="finished">{g.finished_last_minute}</td>
                  <td class={g.errors_last_minute ? "errors error" : "errors"}>{g.errors_last_minute}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Recent errors</h3>
          {overview.errors.length === 0 ? (
            <p class="muted">none</p>
          ) : (
            <ul id="errors">
              {overview.errors.map((e) => (
                <li key={e.run_id} data-run={e.run_id}>
                  <a href={`#/threads/${e.thread_id}/runs/${e.run_id}`}>
                    {e.graph_id} run {short(e.run_id)}
                  </a>{" "}
                  <span class="muted">{clock(e.at)}</span> <code class="error">{e.error}</code>
                </li>
              ))}
            </ul>
          )}
        </>
      )}
    </section>
  );
}

function Card(props: { id: string; label: string; value: string }) {
  return (
    <div class="card" id={props.id}>
      <div class="value">{props.value}</div>
      <div class="label">{props.label}</div>
    </div>
  );
}
