import { useEffect, useState } from "preact/hooks";

import { api, sse, type SseEvent } from "./api";

export type Loaded<T> = { data: T | null; error: string | null; reload: () => void };

/** GETs (or POSTs) `path` now, whenever `deps` change, and every `everyMs` if given. */
export function useApi<T>(
  path: string | null,
  deps: unknown[] = [],
  options: { everyMs?: number; body?: unknown; method?: string } = {},
): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return;
    let live = true;
    const load = () =>
      api<T>(path, { method: options.method, body: options.body })
        .then((value) => {
          if (!live) return;
          setData(value);
          setError(null);
        })
        .catch((err: Error) => live && setError(err.message));
    void load();
    const timer = options.everyMs ? window.setInterval(load, options.everyMs) : undefined;
    return () => {
      live = false;
      if (timer !== undefined) window.clearInterval(timer);
    };
  }, [path, tick, ...deps]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

/** Follows a server-sent-events feed while mounted; reconnects after a drop (2 s later). */
export function useSse(
  path: string | null,
  onEvent: (event: SseEvent) => void,
  deps: unknown[] = [],
  options: { lastEventId?: string; reconnect?: boolean; onClose?: () => void } = {},
): string | null {
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (path === null) return;
    const abort = new AbortController();
    let timer: number | undefined;
    const connect = (lastEventId: string | undefined) => {
      let lastId = lastEventId;
      sse(
        path,
        (event) => {
          if (event.id) lastId = event.id;
          setError(null);
          onEvent(event);
        },
        abort.signal,
        lastEventId,
      )
        .then(() => {
          if (!abort.signal.aborted) options.onClose?.();
          if (options.reconnect && !abort.signal.aborted) timer = window.setTimeout(() => connect(lastId), 2000);
        })
        .catch((err: Error) => {
          if (abort.signal.aborted) return;
          setError(err.message);
          if (options.reconnect) timer = window.setTimeout(() => connect(lastId), 2000);
        });
    };
    connect(options.lastEventId);
    return () => {
      abort.abort();
      if (timer !== undefined) window.clearTimeout(timer);
    };
  }, [path, ...deps]);
  return error;
}
