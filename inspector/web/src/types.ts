// The shapes the page reads: LangGraph's HTTP API (threads, runs, state) and stepstream's
// read-only /inspector endpoints (docs/inspector.md, "Endpoints").

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type Config = { replica: string; auth_required: boolean; jaeger_ui_url: string | null };

export type Replica = {
  name: string;
  started_at: string;
  heartbeat_at: string;
  alive: boolean;
  draining: boolean;
  running: number;
  queued: number;
  leases: number;
};

export type GraphLoad = {
  graph_id: string;
  running: number;
  queued: number;
  finished_last_minute: number;
  errors_last_minute: number;
};

export type RunError = { run_id: string; thread_id: string; graph_id: string; error: string; at: string };

export type Overview = {
  at: string;
  runs_per_second: number;
  queued: number;
  running: number;
  replicas: Replica[];
  graphs: GraphLoad[];
  errors: RunError[];
};

export type Run = {
  run_id: string;
  thread_id: string;
  assistant_id: string;
  created_at: string;
  updated_at: string;
  status: string;
  metadata: Record<string, Json>;
  multitask_strategy: string;
  kwargs?: { input?: Json; command?: Json };
  trace_id?: string;
  replica?: string;
};

export type Thread = {
  thread_id: string;
  created_at: string;
  updated_at: string;
  status: string;
  metadata: Record<string, Json>;
  values: Json;
  interrupts: Record<string, { id?: string; value: Json }[]>;
};

export type CheckpointRef = {
  thread_id?: string;
  checkpoint_ns: string;
  checkpoint_id: string | null;
};

export type StateTask = {
  id: string;
  name: string;
  path: Json[];
  error: string | null;
  interrupts: { id?: string; value: Json }[];
  checkpoint: CheckpointRef | null;
  result: Json;
};

export type State = {
  values: Json;
  next: string[];
  tasks: StateTask[];
  metadata: Record<string, Json> | null;
  created_at: string | null;
  checkpoint: CheckpointRef;
  parent_checkpoint: CheckpointRef | null;
  interrupts: { id?: string; value: Json }[];
};

export type TaskStatus = "ok" | "error" | "interrupted" | "running";

export type TimelineTask = {
  id: string;
  name: string;
  path: Json[];
  started_at: string | null;
  ended_at: string | null;
  status: TaskStatus;
  error: string | null;
  retries: number;
  replica: string | null;
};

export type Superstep = {
  step: number;
  started_at: string | null;
  ended_at: string | null;
  checkpoint_id: string | null;
  tasks: TimelineTask[];
};

export type Takeover = { at: string; from_replica: string; to_replica: string };

export type Timeline = {
  run: Run;
  supersteps: Superstep[];
  takeovers: Takeover[];
  interrupts: { id: string; value: Json; step: number }[];
};

export type Span = {
  span_id: string;
  parent_id: string | null;
  name: string;
  service: string;
  replica: string | null;
  start_us: number;
  duration_us: number;
  attributes: Record<string, Json>;
};

export type Trace = { trace_id: string; jaeger_ui_url: string | null; spans: Span[] };

export type Limit = {
  key: string;
  kind: "rate" | "window" | string;
  shape?: string;
  rate: number | null;
  burst: number | null;
  window_s: number | null;
  unit?: string;
  granted_per_s: number;
  waits_per_s: number;
  granted_total?: number;
  waited_total?: number;
  queue: number;
  available?: number;
  paused_until: string | null;
  budget: "shared" | "local";
};

export type Limits = { ratelimiter: string | null; mode?: string; limits: Limit[] };
