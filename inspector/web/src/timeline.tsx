import type { Superstep, Timeline, TimelineTask } from "./types";
import { clock, duration, ms, short } from "./util";

function bounds(timeline: Timeline, now: number): [number, number] {
  const times: number[] = [];
  for (const step of timeline.supersteps) {
    for (const at of [step.started_at, step.ended_at]) if (at) times.push(Date.parse(at));
    for (const task of step.tasks) {
      for (const at of [task.started_at, task.ended_at]) if (at) times.push(Date.parse(at));
      if (task.status === "running") times.push(now);
    }
  }
  for (const takeover of timeline.takeovers) times.push(Date.parse(takeover.at));
  if (!times.length) return [now, now + 1];
  const start = Math.min(...times);
  return [start, Math.max(start + 1, ...times)];
}

function TaskBar(props: { task: TimelineTask; start: number; span: number; now: number }) {
  const { task, start, span, now } = props;
  const from = task.started_at ? Date.parse(task.started_at) : start;
  const to = task.ended_at ? Date.parse(task.ended_at) : task.status === "running" ? now : from;
  const left = ((from - start) / span) * 100;
  const width = Math.max(0.5, ((to - from) / span) * 100);
  const took = task.ended_at ? ms(task.started_at, task.ended_at) : null;
  return (
    <div class="lane">
      <div
        class={`bar task-${task.status}`}
        data-task={task.name}
        data-status={task.status}
        style={{ left: `${left}%`, width: `${width}%` }}
        title={`${task.name} ${task.status} ${duration(took)}${task.replica ? ` on ${task.replica}` : ""}`}
      />
      <span
        // Beside the bar: after its end, before its start when it ends near the right edge, or
        // on the bar itself when it spans most of the row.
        class={left + width < 70 || left > 30 ? "bar-label" : "bar-label on-bar"}
        style={left + width < 70 ? { left: `${left + width}%` } : left > 30 ? { right: `${100 - left}%` } : { left: `${left}%` }}
      >
        {task.name} <span class="muted">{duration(took)}</span>
        {task.retries > 0 && (
          <span class="retries" title="retries">
            {" "}
            ↻{task.retries}
          </span>
        )}
        {task.replica && <span class="muted"> @{task.replica}</span>}
      </span>
    </div>
  );
}

function StepRow(props: {
  step: Superstep;
  start: number;
  span: number;
  now: number;
  selected: boolean;
  onSelect: (checkpointId: string) => void;
}) {
  const { step, start, span, now } = props;
  const failed = step.tasks.filter((t) => t.status === "error");
  // A subgraph's tasks are listed in the superstep of the task that runs it, their path the
  // subgraph's namespace ("node:<that task's id>", deeper ones after it).
  const root = step.tasks.filter((t) => !t.path.length);
  const inside = (task: TimelineTask) =>
    step.tasks.filter((t) => t.path.length && String(t.path[0]).endsWith(`:${task.id}`));
  return (
    <div class={`step${props.selected ? " selected" : ""}`} data-step={step.step}>
      <div
        class="step-head"
        onClick={() => step.checkpoint_id && props.onSelect(step.checkpoint_id)}
        title={step.checkpoint_id ? "show the state this superstep wrote" : ""}
      >
        <strong>step {step.step}</strong>
        <span class="muted"> {duration(ms(step.started_at, step.ended_at))}</span>
        <span class="muted"> · {step.tasks.length} task{step.tasks.length === 1 ? "" : "s"}</span>
      </div>
      <div class="lanes">
        {root.map((task) => {
          const sub = inside(task);
          return (
            <div key={task.id}>
              <TaskBar task={task} start={start} span={span} now={now} />
              {sub.length > 0 && (
                <details class="subgraph-tasks" data-task={task.name}>
                  <summary class="muted">
                    {sub.length} subgraph task{sub.length === 1 ? "" : "s"} of {task.name}
                  </summary>
                  {sub.map((t) => (
                    <TaskBar key={t.id} task={t} start={start} span={span} now={now} />
                  ))}
                </details>
              )}
            </div>
          );
        })}
      </div>
      {failed.map((task) => (
        <pre key={task.id} class="failure error" data-task={task.name}>
          {task.name} failed{task.retries ? ` after ${task.retries} retries` : ""}: {task.error}
        </pre>
      ))}
    </div>
  );
}

export function TimelineView(props: {
  timeline: Timeline;
  selectedCheckpoint: string | null;
  onSelect: (checkpointId: string) => void;
}) {
  const { timeline } = props;
  const now = Date.now();
  const [start, end] = bounds(timeline, now);
  const span = end - start;
  return (
    <div id="timeline">
      <div class="axis muted">
        <span>{clock(new Date(start).toISOString())}</span>
        <span>{duration(span)}</span>
      </div>
      <div class="steps">
        {timeline.takeovers.map((t) => (
          <div
            key={t.at}
            class="takeover-line"
            style={{ left: `${((Date.parse(t.at) - start) / span) * 100}%` }}
            title={`taken over by ${t.to_replica}`}
          />
        ))}
        {timeline.supersteps.map((step) => (
          <StepRow
            key={step.step}
            step={step}
            start={start}
            span={span}
            now={now}
            selected={step.checkpoint_id !== null && step.checkpoint_id === props.selectedCheckpoint}
            onSelect={props.onSelect}
          />
        ))}
      </div>
      {timeline.takeovers.length > 0 && (
        <ul id="takeovers">
          {timeline.takeovers.map((t) => (
            <li key={t.at} class="takeover">
              ⇄ {clock(t.at)}: {t.from_replica} stopped; {t.to_replica} took the run over
            </li>
          ))}
        </ul>
      )}
      {timeline.interrupts.length > 0 && (
        <ul id="timeline-interrupts">
          {timeline.interrupts.map((i) => (
            <li key={i.id}>
              ⏸ step {i.step}: interrupt {short(i.id)}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
