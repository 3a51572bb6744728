import { useState } from "preact/hooks";

import { api } from "./api";
import type { Config, Span, Trace } from "./types";
import { duration } from "./util";

function hue(text: string): number {
  let h = 0;
  for (const c of text) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}

/** Spans in tree order (each after its parent), with their depth. */
function ordered(spans: Span[]): [Span, number][] {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map<string | null, Span[]>();
  for (const span of spans) {
    const parent = span.parent_id && ids.has(span.parent_id) ? span.parent_id : null;
    children.set(parent, [...(children.get(parent) ?? []), span]);
  }
  const out: [Span, number][] = [];
  const walk = (parent: string | null, depth: number) => {
    for (const span of (children.get(parent) ?? []).sort((a, b) => a.start_us - b.start_us)) {
      out.push([span, depth]);
      walk(span.span_id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

export function jaegerLink(config: Config | null, traceId: string | undefined): string | null {
  if (!config?.jaeger_ui_url || !traceId) return null;
  return `${config.jaeger_ui_url.replace(/\/$/, "")}/trace/${traceId}`;
}

export function TraceView(props: { runId: string; config: Config | null; traceId?: string }) {
  const [trace, setTrace] = useState<Trace | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const load = () => {
    setLoading(true);
    api<Trace>(`/inspector/runs/${props.runId}/trace`)
      .then((t) => {
        setTrace(t);
        setError(null);
      })
      .catch((err: Error) => setError(err.message))
      .finally(() => setLoading(false));
  };
  const link = trace?.jaeger_ui_url ?? jaegerLink(props.config, trace?.trace_id ?? props.traceId);
  const rows = trace ? ordered(trace.spans) : [];
  const start = rows.length ? Math.min(...rows.map(([s]) => s.start_us)) : 0;
  const end = rows.length ? Math.max(...rows.map(([s]) => s.start_us + s.duration_us)) : 1;
  const span = Math.max(1, end - start);
  return (
    <div id="trace">
      <button id="load-trace" onClick={load} disabled={loading}>
        {trace ? "Reload trace" : "Draw the trace"}
      </button>
      {link && (
        <a id="jaeger-link" href={link} target="_blank" rel="noreferrer">
          open in Jaeger
        </a>
      )}
      {error && <p class="error" id="trace-error">{error}</p>}
      {trace && (
        <div class="waterfall">
          <p class="muted">
            trace {trace.trace_id}: {trace.spans.length} spans over {duration(span / 1000)}
          </p>
          {rows.map(([s, depth]) => (
            <div class="span-row" key={s.span_id} data-span={s.name}>
              <div class="span-name" style={{ paddingLeft: `${depth * 12}px` }} title={JSON.stringify(s.attributes)}>
                {s.name}
                <span class="muted"> {s.replica ?? s.service}</span>
              </div>
              <div class="span-track">
                <div
                  class="span-bar"
                  style={{
                    left: `${((s.start_us - start) / span) * 100}%`,
                    width: `${Math.max(0.3, (s.duration_us / span) * 100)}%`,
                    background: `hsl(${hue(s.replica ?? s.service)} 55% 55%)`,
                  }}
                />
              </div>
              <span class="muted span-duration">{duration(s.duration_us / 1000)}</span>
            </div>
          ))}
        </div>
      )}
    </div>
  );
}
