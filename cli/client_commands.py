"""Client verbs: graphs, run, join, sessions. They talk to a server through the SDK.

`run` and `join` show a live view of a run (supersteps, their tasks with
state and duration, chat model text streamed below) on a terminal, and one
line per event otherwise. When a run stops at an interrupt, the question is
asked on stdin if it is a terminal; else the command exits with code 3 and
says how to answer it later.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from stepstream.client import BusyPolicy, Command, RunEvent, RunOptions, StepstreamClient, StepstreamError
from stepstream.client.jsonio import Json
from stepstream.client.progress import RunProgress, StepProgress, TaskProgress

DEFAULT_ADDRESS = "127.0.0.1:50051"
# Exit code of a run that stopped at an interrupt nobody could answer here.
EXIT_INTERRUPTED = 3
# Supersteps drawn in the live view; older ones collapse into one line.
MAX_STEPS_SHOWN = 15
MAX_MESSAGE_LINES = 12

out = Console()
err = Console(stderr=True, soft_wrap=True)

ADDRESS = typer.Option(
    None,
    "--address",
    "-a",
    envvar="STEPSTREAM_ADDRESS",
    help=f"Server host:port; repeat (or comma-separate) for several replicas. [default: {DEFAULT_ADDRESS}]",
)

API_KEY = typer.Option(None, "--api-key", envvar="STEPSTREAM_API_KEY", help="API key (sent as x-api-key).")
TOKEN = typer.Option(None, "--token", envvar="STEPSTREAM_TOKEN", help="JWT bearer token.")
TLS_CA = typer.Option(
    None, "--tls-ca", envvar="STEPSTREAM_TLS_CA", help="Connect over TLS, trusting this CA certificate."
)

SUBGRAPHS = typer.Option(False, "--subgraphs", help="Also show the supersteps of subgraphs.")

sessions_app = typer.Typer(help="Sessions (LangGraph threads).", no_args_is_help=True)


# -- plumbing ------------------------------------------------------------------


def _client(
    addresses: list[str] | None, api_key: str | None, token: str | None, tls_ca: str | None
) -> StepstreamClient:
    split = [a.strip() for value in addresses or () for a in value.replace(",", " ").split()]
    return StepstreamClient(split or [DEFAULT_ADDRESS], api_key=api_key, token=token, tls_ca_file=tls_ca)


def _execute(work: Callable[[], Coroutine[Any, Any, int | None]]) -> None:
    """Run a verb; a failed call is one line on stderr (status code + message) and exit 1."""
    try:
        code: int | None = asyncio.run(work())
    except StepstreamError as error:
        # Text, not markup: messages may hold brackets ("[field: why]").
        err.print(Text.assemble(("error:", "red"), f" {error}"), highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


def _parse_json(text: str | None, option: str) -> Json:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None


def _table(headers: list[str], rows: list[list[str]], title: str = "") -> None:
    """A rich table on a terminal; tab-separated lines (whole ids, easy to cut) otherwise."""
    if not out.is_terminal:
        for row in [headers, *rows]:
            typer.echo("\t".join(row))
        return
    table = Table(box=None, title=title or None, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, no_wrap=i == 0)  # the id column is never cut
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _when(value: datetime | None) -> str:
    return f"{value.astimezone():%Y-%m-%d %H:%M:%S}" if value else ""


def _from(node: str) -> str:
    return f" ({node})" if node else ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _json_text(value: Json) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


# -- rendering a run -----------------------------------------------------------

_TASK_STYLE = {
    "pending": ("○", "dim"),
    "running": ("●", "yellow"),
    "done": ("✓", "green"),
    "failed": ("✗", "red"),
    "interrupted": ("?", "cyan"),
    "cancelled": ("■", "magenta"),
}
_STATUS_STYLE = {
    "succeeded": "green",
    "interrupted": "cyan",
    "failed": "red",
    "cancelled": "magenta",
}


def _task_line(task: TaskProgress, now: float) -> Text:
    icon, style = _TASK_STYLE.get(task.state, ("?", ""))
    line = Text.assemble((f"{icon} ", style), (task.node, "bold"), f"  {task.state}", style="")
    elapsed = task.elapsed(now)
    if elapsed is not None:
        line.append(f"  {_seconds(elapsed)}", style="dim")
    if task.error:
        line.append(f"  {task.error}", style="red")
    return line


def _add_steps(
    parent: Tree,
    steps: list[StepProgress],
    by_namespace: dict[tuple[str, ...], list[StepProgress]],
    placed: set[tuple[str, ...]],
    now: float,
    label: str = "",
) -> None:
    """Add supersteps under `parent`, each task followed by its subgraph's supersteps."""
    for step in steps:
        placed.add(step.namespace)
        text = Text(f"superstep {step.step}", style="" if step.finished else "bold")
        if label:
            text.append(f"  [{label}]", style="dim")
        branch = parent.add(text)
        for task in step.tasks.values():
            task_branch = branch.add(_task_line(task, now))
            # A subgraph's namespace is its parent's plus "node:task_id" of the task running it.
            inner = (*step.namespace, f"{task.node}:{task.task_id}")
            _add_steps(task_branch, by_namespace.get(inner, []), by_namespace, placed, now)


def render(progress: RunProgress) -> RenderableType:
    """The live view: a tree of supersteps and tasks, then streamed text."""
    now = progress.clock()
    header = Text.assemble(
        ("run ", "bold"),
        progress.run_id or "…",
        ("  graph ", "dim"),
        progress.graph_id or "?",
        ("  session ", "dim"),
        progress.session_id or "?",
        "  ",
        (progress.status, _STATUS_STYLE.get(progress.status, "yellow")),
        (f"  {progress.elapsed():.1f} s", "dim"),
    )
    tree = Tree(header)
    by_namespace: dict[tuple[str, ...], list[StepProgress]] = {}
    for step in progress.steps.values():
        by_namespace.setdefault(step.namespace, []).append(step)
    placed: set[tuple[str, ...]] = set()
    root = by_namespace.get((), [])
    if len(root) > MAX_STEPS_SHOWN:
        tree.add(Text(f"… {len(root) - MAX_STEPS_SHOWN} earlier supersteps", style="dim"))
        root = root[-MAX_STEPS_SHOWN:]
    _add_steps(tree, root, by_namespace, placed, now)
    # Subgraph steps whose parent task is not shown (joined from a cursor): at the top.
    for namespace, steps in by_namespace.items():
        if namespace and namespace not in placed:
            _add_steps(tree, steps, by_namespace, placed, now, label=" / ".join(namespace))
    parts: list[RenderableType] = [tree]
    text = "\n\n".join(t for t in progress.messages.values() if t)
    if text:
        tail = "\n".join(text.splitlines()[-MAX_MESSAGE_LINES:])
        parts.append(Panel(Text(tail), title="messages", title_align="left", border_style="dim"))
    if progress.custom:
        node, value = progress.custom[-1]
        parts.append(Text(f"custom{_from(node)}: {orjson.dumps(value).decode()}", style="dim"))
    return Group(*parts)


class _Lines:
    """One line per event, for logs and pipes, where a live view cannot redraw."""

    def __init__(self) -> None:
        self.in_message = False

    def show(self, event: RunEvent, progress: RunProgress) -> None:
        data: Any = event.data
        if event.kind == "message_chunk":
            sys.stdout.write(data.text)
            sys.stdout.flush()
            self.in_message = True
            return
        line = self._line(event, data, progress)
        if line is None:
            return
        if self.in_message:
            sys.stdout.write("\n")
            self.in_message = False
        prefix = f"[{'/'.join(event.namespace)}] " if event.namespace else ""
        typer.echo(f"{event.seq:>5}  {prefix}{line}")

    @staticmethod
    def _line(event: RunEvent, data: Any, progress: RunProgress) -> str | None:
        kind = event.kind
        if kind == "run_queued":
            return f"run {event.run_id} queued on session {data.session_id} (graph {data.graph_id})"
        if kind == "run_started":
            return f"run started (attempt {data.attempt}{', ' + data.replica if data.replica else ''})"
        if kind == "superstep_started":
            return f"superstep {data.step}: {', '.join(t.node for t in data.tasks) or '-'}"
        if kind == "task_finished":
            return f"  {data.task.node} done in {_seconds(data.duration)}"
        if kind == "task_failed":
            error = f"{data.error_type}: {data.error_message}"
            return f"  {data.task.node} failed in {_seconds(data.duration)}: {error}"
        if kind == "custom":
            return f"  custom{_from(data.node)}: {orjson.dumps(data.value).decode()}"
        if kind == "interrupt_raised":
            return f"interrupt at superstep {data.step}"
        if event.terminal:
            return f"run {progress.status}"
        return None


async def _show(events: AsyncIterator[RunEvent], progress: RunProgress) -> RunProgress:
    """Consume a run's events, drawing them as they come."""
    if not out.is_terminal:
        lines = _Lines()
        async for event in events:
            progress.apply(event)
            lines.show(event, progress)
        if lines.in_message:
            sys.stdout.write("\n")
        return progress
    # Live redraws from its own thread (so running tasks' durations tick between
    # events); the lock keeps it from reading the progress while an event changes it.
    lock = threading.Lock()

    def draw() -> RenderableType:
        with lock:
            return render(progress)

    with Live(console=out, get_renderable=draw, refresh_per_second=8):
        async for event in events:
            with lock:
                progress.apply(event)
    return progress


# -- following runs through interrupts -----------------------------------------


def _describe(value: Json) -> str:
    return value if isinstance(value, str) else _json_text(value)


async def _ask(progress: RunProgress) -> Command | None:
    """Ask each pending interrupt's question on stdin; None when stdin is not a terminal."""
    if not sys.stdin.isatty():
        return None
    answers: dict[str, Json] = {}
    for interrupt in progress.interrupts:
        out.print(Text.assemble(("? ", "cyan bold"), _describe(interrupt.value)))
        text = await asyncio.to_thread(out.input, "[cyan]answer>[/cyan] ")
        try:
            answers[interrupt.interrupt_id] = orjson.loads(text)
        except orjson.JSONDecodeError:
            answers[interrupt.interrupt_id] = text  # plain words are a string answer
    if len(answers) == 1:
        return Command(resume=next(iter(answers.values())))
    return Command(resume_by_id=answers)


def _how_to_resume(progress: RunProgress) -> None:
    err.print(
        f"run {progress.run_id} is waiting for an answer on session {progress.session_id}:", highlight=False
    )
    for interrupt in progress.interrupts:
        err.print(f"  ? {_describe(interrupt.value)}", highlight=False, markup=False)
    err.print(
        f"answer it with: stepstream run {progress.graph_id} --session {progress.session_id}"
        " --resume '<JSON>'",
        highlight=False,
        markup=False,
    )


def _summary(progress: RunProgress) -> int:
    tasks = sum(len(s.tasks) for s in progress.steps.values())
    line = f"run {progress.run_id} {progress.status}: {_count(len(progress.steps), 'superstep')}, "
    line += _count(tasks, "task")
    line += f" in {_seconds(progress.elapsed())}"
    if progress.status == "succeeded":
        err.print(line, highlight=False, markup=False)
        typer.echo(_json_text(progress.values))
        return 0
    err.print(
        f"{line}: {progress.error}" if progress.error else line, highlight=False, markup=False, style="red"
    )
    return 1


async def _follow(
    client: StepstreamClient, events: AsyncIterator[RunEvent], run_id: str = "", *, subgraphs: bool = False
) -> int:
    """Show a run to its end; answer interrupts and go on with the continuation."""
    while True:
        progress = RunProgress(run_id)
        try:
            await _show(events, progress)
        except asyncio.CancelledError:  # Ctrl-C: the run itself goes on in the server
            if progress.run_id and not progress.done:
                err.print(
                    f"detached from run {progress.run_id}, which goes on; follow it again with: "
                    f"stepstream join {progress.run_id} --after-seq {progress.last_seq}",
                    highlight=False,
                    markup=False,
                )
            raise
        if not progress.done:
            err.print(f"the event stream of run {progress.run_id} ended early", style="red")
            return 1
        if progress.status != "interrupted":
            return _summary(progress)
        if not (progress.session_id and progress.graph_id):
            run = await client.runs.get(progress.run_id)
            progress.session_id, progress.graph_id = run.session_id, run.graph_id
        command = await _ask(progress)
        if command is None:
            _how_to_resume(progress)
            return EXIT_INTERRUPTED
        events = client.runs.stream(
            progress.graph_id, session_id=progress.session_id, command=command, subgraphs=subgraphs
        )
        run_id = ""


# -- verbs ---------------------------------------------------------------------


def graphs(
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """List the graphs the server serves."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            found = await client.graphs.list()
        rows = [
            [g.graph_id, ", ".join(g.nodes), str(g.default_max_concurrency or "-"), g.description]
            for g in found
        ]
        _table(["graph", "nodes", "max concurrency", "description"], rows)

    _execute(work)


def run(
    graph: str = typer.Argument(..., help="Graph id (with --assistant: an assistant id)."),
    input_json: str | None = typer.Option(None, "--input", "-i", help="Graph input, JSON."),
    context_json: str | None = typer.Option(
        None, "--context", "-c", help="The run's context (LangGraph's Runtime.context), a JSON object."
    ),
    assistant: bool = typer.Option(
        False, "--assistant", help="GRAPH names an assistant: run its graph with its saved settings."
    ),
    session: str | None = typer.Option(
        None, "--session", "-s", help="Run on this session (default: a new one)."
    ),
    resume: str | None = typer.Option(None, "--resume", help="Answer the session's pending interrupt, JSON."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Show the run live until it ends."),
    busy_policy: Annotated[
        BusyPolicy | None, typer.Option("--busy-policy", help="What to do when the session is busy.")
    ] = None,
    max_concurrency: int = typer.Option(
        0, "--max-concurrency", help="Tasks at once per superstep (0: default)."
    ),
    subgraphs: bool = SUBGRAPHS,
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Start a run of GRAPH (or as an assistant) and show its supersteps and tasks live."""
    value = _parse_json(input_json, "--input")
    context = _parse_json(context_json, "--context")
    if context is not None and not isinstance(context, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--context")
    graph_id, assistant_id = (None, graph) if assistant else (graph, None)
    command = Command(resume=_parse_json(resume, "--resume")) if resume is not None else None
    if command is not None and not session:
        raise typer.BadParameter(
            "--resume needs the --session whose interrupt it answers", param_hint="--resume"
        )
    options = RunOptions(max_concurrency=max_concurrency, busy_policy=busy_policy)

    async def work() -> int:
        async with _client(address, api_key, token, tls_ca) as client:
            if not follow:
                started = await client.runs.start(
                    graph_id,
                    value,
                    session_id=session,
                    command=command,
                    options=options,
                    assistant_id=assistant_id,
                    context=context,
                )
                typer.echo(f"run {started.run_id} {started.status} on session {started.session_id}")
                return 0
            events = client.runs.stream(
                graph_id,
                value,
                session_id=session,
                command=command,
                options=options,
                subgraphs=subgraphs,
                assistant_id=assistant_id,
                context=context,
            )
            return await _follow(client, events, subgraphs=subgraphs)

    _execute(work)


def join(
    run_id: str = typer.Argument(..., help="Run id."),
    after_seq: int = typer.Option(0, "--after-seq", help="Show events after this seq."),
    subgraphs: bool = SUBGRAPHS,
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Follow a run's events (live until it ends), from any replica."""

    async def work() -> int:
        async with _client(address, api_key, token, tls_ca) as client:
            events = client.runs.join(run_id, after_seq, subgraphs=subgraphs)
            return await _follow(client, events, run_id, subgraphs=subgraphs)

    _execute(work)


@sessions_app.command("list")
def sessions_list(
    graph: str | None = typer.Option(None, "--graph", "-g", help="Only sessions of this graph."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many (newest first)."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """List sessions, newest first."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            found = [s async for s in client.sessions.list(graph_id=graph, limit=limit)]
        rows = [[s.session_id, s.graph_id, s.status, _when(s.created_at), _when(s.updated_at)] for s in found]
        _table(["session", "graph", "status", "created", "updated"], rows)

    _execute(work)


@sessions_app.command("show")
def sessions_show(
    session_id: str = typer.Argument(..., help="Session id."),
    runs: int = typer.Option(10, "--runs", help="Show this many latest runs."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Show a session: its state, pending interrupts and latest runs."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            session = await client.sessions.get(session_id)
            state = await client.sessions.state(session_id)
            latest = [r async for r in client.runs.list(session_id=session_id, limit=runs)]
        out.print(
            Text.assemble(
                ("session ", "bold"),
                session.session_id,
                "  graph ",
                session.graph_id,
                "  ",
                session.status.value,
            )
        )
        if session.metadata:
            out.print(f"metadata: {orjson.dumps(session.metadata).decode()}", markup=False, highlight=False)
        out.print(
            f"checkpoint {state.checkpoint_id or '-'} (step {state.step}, {state.source or '-'})",
            markup=False,
        )
        out.print(f"next: {', '.join(state.next) or '(end)'}", markup=False)
        for interrupt in state.interrupts:
            out.print(f"waiting for an answer: {_describe(interrupt.value)}", markup=False, style="cyan")
        out.print("values:", style="bold")
        out.print_json(_json_text(state.values))
        rows = [
            [
                r.run_id,
                r.status,
                _when(r.created_at),
                f"{r.error_type}: {r.error_message}" if r.error_type else "",
            ]
            for r in latest
        ]
        _table(["run", "status", "created", "error"], rows, title="runs")

    _execute(work)


@sessions_app.command("delete")
def sessions_delete(
    session_id: str = typer.Argument(..., help="Session id."),
    force: bool = typer.Option(False, "--force", help="Cancel an active run first."),
    address: list[str] | None = ADDRESS,
    api_key: str | None = API_KEY,
    token: str | None = TOKEN,
    tls_ca: str | None = TLS_CA,
) -> None:
    """Delete a session with its runs, events and checkpoints."""

    async def work() -> None:
        async with _client(address, api_key, token, tls_ca) as client:
            await client.sessions.delete(session_id, force=force)
        typer.echo(f"deleted session {session_id}")

    _execute(work)


def register(app: typer.Typer) -> None:
    app.command("graphs")(graphs)
    app.command("run")(run)
    app.command("join")(join)
    app.add_typer(sessions_app, name="sessions")
