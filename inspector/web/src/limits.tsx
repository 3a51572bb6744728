import { useApi } from "./hooks";
import type { Limit, Limits } from "./types";
import { clock } from "./util";

function shape(limit: Limit): string {
  const unit = limit.unit ?? "requests";
  const window = `${limit.window_s ?? "?"} s`;
  if (limit.kind === "window") return `${limit.rate ?? "?"} ${unit} in any ${limit.shape ?? ""} window of ${window}`;
  const per = limit.window_s === 1 ? "s" : window;
  return `${limit.rate ?? "?"} ${unit} per ${per}, burst ${limit.burst ?? "?"}`;
}

export function LimitsView() {
  // The limiter's describe calls are cheap but not free: every 2 s while this view is open.
  const limits = useApi<Limits>("/inspector/limits", [], { everyMs: 2000 });
  return (
    <section id="limits">
      <h2>Rate limits</h2>
      {limits.error && <p class="error">{limits.error}</p>}
      {limits.data && (
        <>
          <p class="muted" id="limiter">
            limiter: {limits.data.mode ?? "?"}
            {limits.data.ratelimiter ? ` at ${limits.data.ratelimiter}` : ""}
          </p>
          {limits.data.limits.length === 0 && <p class="muted">no rate limits are configured</p>}
          <table>
            <thead>
              <tr>
                <th>key</th>
                <th>kind</th>
                <th>limit</th>
                <th>granted / s</th>
                <th>waits / s</th>
                <th>queue</th>
                <th>available</th>
                <th>paused until (429)</th>
                <th>budget</th>
              </tr>
            </thead>
            <tbody>
              {limits.data.limits.map((l) => (
                <tr key={l.key} data-key={l.key}>
                  <td>{l.key}</td>
                  <td>{l.kind}</td>
                  <td>{shape(l)}</td>
                  <td class="granted" title={`${l.granted_total ?? "?"} since the limiter started`}>
                    {l.granted_per_s.toFixed(1)}
                  </td>
                  <td class="waits" title={`${l.waited_total ?? "?"} since the limiter started`}>
                    {l.waits_per_s.toFixed(1)}
                  </td>
                  <td class="queue">{l.queue}</td>
                  <td>{l.available ?? "-"}</td>
                  <td class={l.paused_until ? "error" : ""}>{l.paused_until ? clock(l.paused_until) : "-"}</td>
                  <td class={`budget budget-${l.budget}`}>{l.budget}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
