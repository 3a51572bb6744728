// Call a stepstream server from Node.js:
//
//   node dist/examples/research.js research ADDRESS           the research assistant, start to answer
//   node dist/examples/research.js join ADDRESS RUN_ID [SEQ]  a run's events after SEQ, reconnecting
//   node dist/examples/research.js assistant ADDRESS          an assistant and a context (graph "context")
//   node dist/examples/research.js crons ADDRESS              a cron every 2 s, one fire, deleted (crons.ts)
//
// `research` lists the graphs, starts a run and prints its events as they arrive,
// then opens a bidirectional session, starts the research assistant on an
// ambiguous question, answers its clarification interrupt and prints the final
// answer. Every line printed starts with what it reports: graph, started, event,
// answer, session, interrupt, resumed.
//
// `assistant` reads the "context" graph's context schema and default assistant,
// creates an assistant of it with saved configurable values and context, and runs
// as that assistant and as the graph's default, each with a context of its own; it
// prints schema, default, assistant, assistant_run and default_run.
import { ClientDuplexStream, credentials } from "@grpc/grpc-js";

import {
  assistants,
  common,
  eventKind,
  events,
  followRun,
  fromJson,
  graphs,
  isTerminal,
  runs,
  sessionEvents,
  sessions,
  toJson,
} from "../src";
import { cronsExample } from "./crons";

const GRAPH_ID = "research_assistant";
const CLEAR_QUESTION = "graph neural networks for chemistry";
const VAGUE_QUESTION = "transformers";
const CLARIFIED_QUERY = "transformers in machine learning";

type RunEvent = events.RunEvent;

function printEvent(event: RunEvent): void {
  let detail = "";
  switch (event.kind?.$case) {
    case "taskStarted":
      detail = event.kind.taskStarted.task?.node ?? "";
      break;
    case "taskFinished":
      detail = event.kind.taskFinished.task?.node ?? "";
      break;
    case "superstepStarted":
      detail = String(event.kind.superstepStarted.step);
      break;
  }
  console.log(`event ${event.runId} ${event.seq} ${eventKind(event)} ${detail}`.trimEnd());
  if (event.kind?.$case === "runFinished" && event.kind.runFinished.interrupts.length === 0) {
    const values = fromJson<{ answer: string }>(event.kind.runFinished.valuesJson);
    console.log(`answer ${event.runId} ${toJson(values?.answer)}`);
  }
}

/** Unary calls of @grpc/grpc-js take a callback; this makes one awaitable. */
function call<Res>(invoke: (callback: (error: Error | null, response: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) =>
    invoke((error, response) => (error ? reject(error) : resolve(response))),
  );
}

async function follow(client: runs.RunServiceClient, runId: string, afterSeq = 0): Promise<void> {
  for await (const event of followRun(client, { runId, afterSeq })) {
    printEvent(event);
  }
}

/** Start a run, then follow its events (reconnecting if the stream breaks). */
async function runInBackground(client: runs.RunServiceClient): Promise<void> {
  const request = runs.StartRunRequest.fromPartial({ graphId: GRAPH_ID, inputJson: toJson({ query: CLEAR_QUESTION }) });
  const started = await call<runs.StartRunResponse>((done) => client.startRun(request, done));
  const run = started.run!;
  console.log(`started ${run.runId} ${run.sessionId}`);
  await follow(client, run.runId);
}

/** What a session stream delivers, one at a time: a run event, or an answer to an action. */
type Received = { event: RunEvent } | { answer: sessions.SessionStreamResponse };

/** One action at a time on a session stream, reading until the server answers it. */
class SessionStream {
  private next = 0;
  private readonly responses: AsyncIterator<sessions.SessionStreamResponse>;
  private readonly ended = new Map<string, RunEvent>();
  // The rest of a batch of events, handed out before the next response is read.
  private readonly pending: RunEvent[] = [];

  constructor(
    private readonly stream: ClientDuplexStream<sessions.SessionStreamRequest, sessions.SessionStreamResponse>,
  ) {
    this.responses = stream[Symbol.asyncIterator]();
  }

  private async read(): Promise<sessions.SessionStreamResponse> {
    const { value, done } = await this.responses.next();
    if (done) {
      throw new Error("the session stream ended");
    }
    return value;
  }

  private async receive(): Promise<Received> {
    for (;;) {
      const event = this.pending.shift();
      if (event !== undefined) {
        return { event };
      }
      const response = await this.read();
      const carried = sessionEvents(response);
      if (carried === undefined) {
        return { answer: response };
      }
      this.pending.push(...carried);
    }
  }

  async do(action: sessions.SessionStreamRequest["action"]): Promise<sessions.SessionStreamResponse> {
    const requestId = `r${++this.next}`;
    this.stream.write(sessions.SessionStreamRequest.fromPartial({ requestId, action }));
    for (;;) {
      const received = await this.receive();
      if ("event" in received) {
        const { event } = received;
        printEvent(event);
        if (isTerminal(event)) {
          this.ended.set(event.runId, event);
        }
        continue;
      }
      const response = received.answer;
      if (response.kind?.$case === "error") {
        const { code, message } = response.kind.error;
        throw new Error(`${requestId}: code ${code}: ${message}`);
      }
      if (response.requestId === requestId) {
        return response;
      }
    }
  }

  /** Print a run's events until its last one, and return that one. */
  async events(runId: string): Promise<RunEvent> {
    const seen = this.ended.get(runId);
    if (seen !== undefined) {
      return seen;
    }
    for (;;) {
      const received = await this.receive();
      if (!("event" in received) || received.event.runId !== runId) {
        continue;
      }
      printEvent(received.event);
      if (isTerminal(received.event)) {
        return received.event;
      }
    }
  }

  close(): void {
    this.stream.end();
  }
}

function runOf(response: sessions.SessionStreamResponse): string {
  if (response.kind?.$case !== "run") {
    throw new Error(`expected a run, got ${response.kind?.$case}`);
  }
  return response.kind.run.runId;
}

/** One bidirectional session: ask, answer the clarification, print the answer. */
async function converse(client: sessions.SessionServiceClient): Promise<void> {
  const session = new SessionStream(client.sessionStream());
  try {
    // batchEvents: each commit's events (often dozens of tokens) come as one response.
    const open = sessions.OpenSession.fromPartial({ graphId: GRAPH_ID, batchEvents: true });
    const opened = await session.do({ $case: "open", open });
    if (opened.kind?.$case !== "session") {
      throw new Error(`expected the session, got ${opened.kind?.$case}`);
    }
    console.log(`session ${opened.kind.session.sessionId}`);

    const input = toJson({ query: VAGUE_QUESTION });
    const asked = await session.do({ $case: "startRun", startRun: sessions.StartRun.fromPartial({ inputJson: input }) });
    const last = await session.events(runOf(asked));
    const interrupts = last.kind?.$case === "runFinished" ? last.kind.runFinished.interrupts : [];
    if (interrupts.length !== 1) {
      throw new Error(`expected one clarification interrupt, the run ended with ${eventKind(last)}`);
    }
    const question = fromJson<{ question: string }>(interrupts[0].valueJson);
    console.log(`interrupt ${last.runId} ${toJson(question?.question)}`);

    // The resume value is any JSON value: here the sharpened question as a JSON string.
    const resume = common.Command.fromPartial({ resumeJson: toJson(CLARIFIED_QUERY) });
    const resumed = runOf(await session.do({ $case: "resume", resume }));
    console.log(`resumed ${resumed}`);
    await session.events(resumed);
  } finally {
    session.close();
  }
}

/** Start a run and wait for it to succeed; the finished run. */
async function runAndWait(client: runs.RunServiceClient, request: runs.StartRunRequest): Promise<runs.Run> {
  const started = await call<runs.StartRunResponse>((done) => client.startRun(request, done));
  const wait = runs.WaitRunRequest.fromPartial({ runId: started.run!.runId, timeoutSeconds: 60 });
  const run = (await call<runs.WaitRunResponse>((done) => client.waitRun(wait, done))).run!;
  if (run.status !== runs.RunStatus.RUN_STATUS_SUCCEEDED) {
    throw new Error(`run ${run.runId} ended ${run.status}: ${run.errorMessage}`);
  }
  return run;
}

/** Run the "context" graph as an assistant with saved settings, and as its default. */
async function assistant(address: string, runClient: runs.RunServiceClient): Promise<void> {
  const insecure = credentials.createInsecure();
  const graphClient = new graphs.GraphServiceClient(address, insecure);
  const assistantClient = new assistants.AssistantServiceClient(address, insecure);
  try {
    const got = await call<graphs.GetGraphResponse>((done) => graphClient.getGraph({ graphId: "context" }, done));
    console.log(`schema ${fromJson<{ title: string }>(got.graph!.contextSchemaJson)?.title}`);
    console.log(`default ${got.graph!.defaultAssistantId}`);

    const create = assistants.CreateAssistantRequest.fromPartial({
      graphId: "context",
      name: "typescript example",
      configJson: toJson({ model: "typescript-model" }),
      contextJson: toJson({ user: "typescript" }),
      metadataJson: toJson({ client: "typescript" }),
    });
    const saved = (
      await call<assistants.CreateAssistantResponse>((done) => assistantClient.createAssistant(create, done))
    ).assistant!;
    console.log(`assistant ${saved.assistantId} ${saved.version}`);

    type Seen = { seen: string[]; model: string };
    // The run's own context goes over the assistant's, key by key.
    let run = await runAndWait(
      runClient,
      runs.StartRunRequest.fromPartial({
        assistantId: saved.assistantId,
        inputJson: "{}",
        contextJson: toJson({ tone: "loud" }),
      }),
    );
    let values = fromJson<Seen>(run.valuesJson)!;
    console.log(`assistant_run ${run.runId} ${values.seen.join(",")} ${values.model}`);

    // A graph's id is accepted wherever an assistant id is: its default assistant.
    run = await runAndWait(
      runClient,
      runs.StartRunRequest.fromPartial({
        assistantId: "context",
        inputJson: "{}",
        contextJson: toJson({ user: "typescript-default", limit: 1 }),
      }),
    );
    values = fromJson<Seen>(run.valuesJson)!;
    console.log(`default_run ${run.runId} ${run.assistantId} ${values.seen.join(",")}`);
  } finally {
    graphClient.close();
    assistantClient.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const [mode, address, ...rest] = argv;
  if (!["research", "join", "assistant", "crons"].includes(mode) || address === undefined) {
    console.error(
      "usage: research.js research ADDRESS | join ADDRESS RUN_ID [AFTER_SEQ] | assistant ADDRESS | crons ADDRESS",
    );
    process.exit(2);
  }
  const insecure = credentials.createInsecure();
  const runClient = new runs.RunServiceClient(address, insecure);
  try {
    if (mode === "join") {
      if (rest[0] === undefined) {
        throw new Error("join needs a RUN_ID");
      }
      await follow(runClient, rest[0], Number(rest[1] ?? 0));
      return;
    }
    if (mode === "assistant") {
      await assistant(address, runClient);
      return;
    }
    if (mode === "crons") {
      await cronsExample(address, runClient);
      return;
    }
    const graphClient = new graphs.GraphServiceClient(address, insecure);
    const listed = await call<graphs.ListGraphsResponse>((done) => graphClient.listGraphs({}, done));
    for (const graph of listed.graphs) {
      console.log(`graph ${graph.graphId} ${graph.nodes.join(",")}`);
    }
    graphClient.close();
    await runInBackground(runClient);
    const sessionClient = new sessions.SessionServiceClient(address, insecure);
    await converse(sessionClient);
    sessionClient.close();
  } finally {
    runClient.close();
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  console.error("error:", error instanceof Error ? error.message : error);
  process.exit(1);
});
