// Every data call of the page: credentials ride in headers (x-api-key or authorization: Bearer),
// kept in sessionStorage for the tab's life, never in a URL. Live feeds are read with fetch
// streaming (not EventSource, which cannot send headers).

const STORE_KEY = "stepstream.inspector.credential";

export type Credential = { kind: "key" | "bearer"; value: string };

export function loadCredential(): Credential | null {
  const raw = sessionStorage.getItem(STORE_KEY);
  if (!raw) return null;
  try {
    const parsed = JSON.parse(raw) as Credential;
    return parsed.value ? parsed : null;
  } catch {
    return null;
  }
}

export function saveCredential(credential: Credential | null): void {
  if (credential) sessionStorage.setItem(STORE_KEY, JSON.stringify(credential));
  else sessionStorage.removeItem(STORE_KEY);
}

function authHeaders(): Record<string, string> {
  const credential = loadCredential();
  if (!credential) return {};
  return credential.kind === "key"
    ? { "x-api-key": credential.value }
    : { authorization: `Bearer ${credential.value}` };
}

/** An answer other than 2xx: its status and the server's `detail`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

// Told when a call is refused for want of credentials, so the page can ask for them.
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

async function failure(response: Response): Promise<ApiError> {
  let detail = response.statusText;
  try {
    const body = (await response.json()) as { detail?: unknown; message?: unknown };
    detail = String(body.detail ?? body.message ?? detail);
  } catch {
    // not JSON: keep the status text
  }
  if (response.status === 401) onUnauthorized();
  return new ApiError(response.status, `${response.status}: ${detail}`);
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { ...authHeaders() };
  if (init.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method: init.method ?? "GET",
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return (text ? JSON.parse(text) : null) as T;
}

export type SseEvent = { event: string; data: unknown; id: string | null };

/** Reads a server-sent-events response with fetch; calls `onEvent` per frame until the stream
 * ends or `signal` aborts. `lastEventId` asks for a replay from that id ("-1": from the start). */
export async function sse(
  path: string,
  onEvent: (event: SseEvent) => void,
  signal: AbortSignal,
  lastEventId?: string,
): Promise<void> {
  const headers: Record<string, string> = { accept: "text/event-stream", ...authHeaders() };
  if (lastEventId !== undefined) headers["last-event-id"] = lastEventId;
  const response = await fetch(path, { headers, signal });
  if (!response.ok || !response.body) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const frame = parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (frame) onEvent(frame);
      end = buffer.indexOf("\n\n");
    }
  }
}

export function parseFrame(block: string): SseEvent | null {
  let event = "message";
  let id: string | null = null;
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (!data.length) return null;
  const text = data.join("\n");
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // a plain-text frame
  }
  return { event, data: parsed, id };
}
