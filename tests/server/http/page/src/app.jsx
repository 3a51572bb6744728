// A page on useStream (@langchain/langgraph-sdk/react) for the browser test of LangGraph's HTTP API.
// Query string: api (server base URL, required), key (sent as x-api-key), bearer (sent as
// Authorization: Bearer ...), assistant (graph name or assistant id), thread (kept in the URL
// so a reload finds the thread; useStream keeps the running run's id in sessionStorage).
import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { useStream } from "@langchain/langgraph-sdk/react";

const query = new URLSearchParams(window.location.search);
const apiUrl = query.get("api");
const apiKey = query.get("key") ?? undefined;
const bearer = query.get("bearer");
const assistantId = query.get("assistant") ?? "chat";

// What the test reads back: every distinct length the last AI message had while rendering.
const harness = (window.__harness = { lengths: [], errors: [] });

function keepThreadInUrl(threadId) {
  const url = new URL(window.location.href);
  url.searchParams.set("thread", threadId);
  window.history.replaceState(null, "", url);
}

function text(content) {
  if (typeof content === "string") return content;
  return (content ?? []).map((part) => (typeof part === "string" ? part : part.text ?? "")).join("");
}

function App() {
  const [threadId, setThreadId] = useState(query.get("thread"));
  const [draft, setDraft] = useState("hello");
  const stream = useStream({
    apiUrl,
    apiKey,
    defaultHeaders: bearer ? { Authorization: `Bearer ${bearer}` } : undefined,
    assistantId,
    threadId,
    onThreadId: (id) => {
      setThreadId(id);
      keepThreadInUrl(id);
    },
    reconnectOnMount: true,
    onError: (error) => harness.errors.push(String(error?.message ?? error)),
  });
  const messages = stream.messages;
  const lastAi = [...messages].reverse().find((m) => m.type === "ai");
  const length = lastAi ? text(lastAi.content).length : 0;
  useEffect(() => {
    if (harness.lengths.at(-1) !== length) harness.lengths.push(length);
  }, [length]);
  const interrupt = stream.interrupt;
  return (
    <main>
      <p>
        server <code>{apiUrl}</code>, assistant <code>{assistantId}</code>, thread{" "}
        <code id="thread">{threadId ?? "(new)"}</code>
      </p>
      <p id="status">{stream.isLoading ? "streaming" : "idle"}</p>
      <ol id="messages">
        {messages.map((m, i) => (
          <li key={m.id ?? i} data-type={m.type}>
            {text(m.content)}
          </li>
        ))}
      </ol>
      {interrupt && interrupt.value ? (
        <div id="interrupt">
          <span id="question">{interrupt.value.question}</span>{" "}
          <button id="approve" onClick={() => stream.submit(undefined, { command: { resume: "yes" } })}>
            Approve
          </button>
        </div>
      ) : null}
      {stream.error ? <p id="error">{String(stream.error?.message ?? stream.error)}</p> : null}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          stream.submit({ messages: [{ type: "human", content: draft }] });
        }}
      >
        <input id="draft" value={draft} onChange={(event) => setDraft(event.target.value)} />
        <button id="send" type="submit" disabled={stream.isLoading}>
          Send
        </button>
      </form>
    </main>
  );
}

if (!apiUrl) {
  document.getElementById("root").textContent = "missing ?api=<server base URL>";
} else {
  createRoot(document.getElementById("root")).render(<App />);
}
