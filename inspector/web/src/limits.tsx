import { useApi } from "./hooks";
import type { Limits } from "./types";
import { clock } from "./util";

function shape(rate: number | null, burst: number | null, window: number | null): string {
  if (window) return `${rate ?? "?"} per ${window} s window`;
  return `${rate ?? "?"} / s, burst ${burst ?? "?"}`;
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
          <p class="muted">limiter: {limits.data.ratelimiter}</p>
          <table>
            <thead>
              <tr>
                <th>key</th>
                <th>kind</th>
                <th>limit</th>
                <th>granted / s</th>
                <th>waits / s</th>
                <th>queue</th>
                <th>paused until (429)</th>
                <th>budget</th>
              </tr>
            </thead>
            <tbody>
              {limits.data.limits.map((l) => (
                <tr key={l.key} data-key={l.key}>
                  <td>{l.key}</td>
                  <td>{l.kind}</td>
                  <td>{shape(l.rate, l.burst, l.window_s)}</td>
                  <td>{l.granted_per_s.toFixed(1)}</td>
                  <td>{l.waits_per_s.toFixed(1)}</td>
                  <td>{l.queue}</td>
                  <td class={l.paused_until ? "error" : ""}>{l.paused_until ? clock(l.paused_until) : "-"}</td>
                  <td class={`budget-${l.budget}`}>{l.budget}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
