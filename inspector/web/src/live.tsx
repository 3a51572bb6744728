import { useState } from "preact/hooks";

import { useSse } from "./hooks";

type Message = { id: string; node: string; text: string };

function chunkText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => (typeof part === "string" ? part : String((part as { text?: unknown }).text ?? ""))).join("");
  }
  return "";
}

/** The run's tokens as they arrive: its stream joined in messages mode from the first frame
 * (Last-Event-ID -1, so a page opened mid-run shows what came before too). `onProgress` is told
 * of every update so the timeline can refresh; `onEnd` when the stream closes. */
export function LiveOutput(props: {
  threadId: string;
  runId: string;
  onProgress: () => void;
  onEnd: () => void;
}) {
  const [messages, setMessages] = useState<Message[]>([]);
  const [ended, setEnded] = useState(false);
  const path =
    `/threads/${props.threadId}/runs/${props.runId}/stream` + `?stream_mode=messages-tuple&stream_mode=updates`;
  const error = useSse(
    path,
    (event) => {
      if (event.event === "messages") {
        const [chunk, metadata] = event.data as [{ id?: string; content?: unknown }, { langgraph_node?: string }];
        const id = chunk.id ?? "message";
        const text = chunkText(chunk.content);
        setMessages((all) => {
          const found = all.find((m) => m.id === id);
          if (found) return all.map((m) => (m.id === id ? { ...m, text: m.text + text } : m));
          return [...all, { id, node: metadata?.langgraph_node ?? "", text }];
        });
      } else if (event.event === "updates") {
        props.onProgress();
      }
    },
    [props.threadId, props.runId],
    {
      lastEventId: "-1",
      // The server closes a run's stream when the run ends.
      onClose: () => {
        setEnded(true);
        props.onEnd();
      },
    },
  );
  return (
    <div id="live" data-ended={ended ? "true" : "false"}>
      {error && <p class="error">{error}</p>}
      {messages.length === 0 && <p class="muted">{ended ? "no tokens streamed" : "waiting for tokens…"}</p>}
      {messages.map((m) => (
        <div class="message" key={m.id} data-node={m.node}>
          <span class="muted">{m.node}</span>
          <p class="tokens">{m.text}</p>
        </div>
      ))}
    </div>
  );
}
