"""A local Jaeger v2 for stepstream's traces: build it once, run it, read a trace.

    python tools/jaeger.py build             # go-builds Jaeger (once; cached) and prints its path
    python tools/jaeger.py run [-- CMD ...]  # Jaeger on 127.0.0.1 (OTLP gRPC 4317, query 16686);
                                             # CMD (e.g. stepstream serve ...) runs exporting to it
    python tools/jaeger.py traces            # the latest traces of service stepstream
    python tools/jaeger.py trace TRACE_ID    # one trace from Jaeger's query API, as a tree

Jaeger v2 is built from its Go module, fetched through the Go module proxy at a
pinned version, into ~/.cache/stepstream (or $STEPSTREAM_CACHE): the first
build takes minutes, later ones are instant. The module's go.mod carries a
replace directive, which `go install module@version` refuses, so the module is
downloaded (`go mod download`) and built as the main module instead. The
build has no web UI assets (they come from a separate npm build); the query
API, which `trace` and the tests read, is complete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

MODULE = "github.com/jaegertracing/jaeger"
# Jaeger tags each release twice; the v1.x tag is the one the Go module proxy serves.
MODULE_VERSION = "v1.76.0"
JAEGER_VERSION = "v2.13.0"

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: {host}:{query_port}
    grpc:
      endpoint: {host}:{query_grpc_port}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{otlp_port}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("STEPSTREAM_CACHE") or pathlib.Path.home() / ".cache" / "stepstream")


def binary_path() -> pathlib.Path:
    return cache_dir() / f"jaeger-{JAEGER_VERSION}"


def build() -> pathlib.Path:
    """The cached binary, built first if it is not there yet."""
    target = binary_path()
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise SystemExit("building Jaeger needs the Go toolchain (`go`) on PATH")
    print(
        f"building Jaeger {JAEGER_VERSION} ({MODULE}@{MODULE_VERSION}); this takes a few minutes", flush=True
    )
    downloaded = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{MODULE_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
    )
    source = pathlib.Path(json.loads(downloaded.stdout)["Dir"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jaeger-build-") as tmp:
        # The module cache is read-only; the build runs in a copy.
        work = pathlib.Path(tmp) / "src"
        shutil.copytree(source, work)
        for path in (work, *work.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)
        out = pathlib.Path(tmp) / "jaeger"
        ldflags = f"-X {MODULE}/internal/version.latestVersion={JAEGER_VERSION}"
        subprocess.run(
            [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out), "./cmd/jaeger"],
            cwd=work,
            check=True,
            env={**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"},
        )
        shutil.move(str(out), target)  # whole or not at all: a broken build leaves no binary
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Jaeger:
    """A Jaeger v2 process with in-memory storage, listening on 127.0.0.1 only."""

    def __init__(self, binary: pathlib.Path, otlp_port: int = 0, query_port: int = 0) -> None:
        self.binary = binary
        self.otlp_port = otlp_port or free_port()
        self.query_port = query_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="stepstream-jaeger-")
        self.log = pathlib.Path(self._dir) / "jaeger.log"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def start(self, timeout: float = 60.0) -> None:
        config = pathlib.Path(self._dir) / "config.yaml"
        config.write_text(
            CONFIG.format(
                host="127.0.0.1",
                otlp_port=self.otlp_port,
                query_port=self.query_port,
                query_grpc_port=free_port(),
            )
        )
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), f"--config=file:{config}"], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jaeger exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(OSError):
                self.get("/api/services")
                with socket.create_connection(("127.0.0.1", self.otlp_port), timeout=0.5):
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jaeger did not answer within {timeout} s:\n{self.log.read_text()}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.query_url + path, timeout=5) as reply:
            return json.loads(reply.read())

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as Jaeger's query API returns it (data[0]), or None while it holds none."""
        try:
            data = self.get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return data[0] if data else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Jaeger:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tree(trace: dict[str, Any]) -> Iterator[str]:
    """Lines of an indented span tree: operation, service, duration."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for span in spans.values():
        parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        if parents and parents[0] in spans:
            children.setdefault(parents[0], []).append(span)
        else:
            roots.append(span)

    def lines(span: dict[str, Any], depth: int) -> Iterator[str]:
        service = trace["processes"][span["processID"]]["serviceName"]
        missing = " (parent not received)" if depth == 0 and span.get("references") else ""
        yield f"{'  ' * depth}{span['operationName']}  [{service}] {span['duration'] / 1000:.1f} ms{missing}"
        for child in sorted(children.get(span["spanID"], []), key=lambda s: s["startTime"]):
            yield from lines(child, depth + 1)

    for root in sorted(roots, key=lambda s: s["startTime"]):
        yield from lines(root, 0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="tools/jaeger.py", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("build", help="build Jaeger once (cached) and print its path")
    run = verbs.add_parser("run", help="run Jaeger on 127.0.0.1 until Ctrl-C")
    run.add_argument("--otlp-port", type=int, default=4317)
    run.add_argument("--query-port", type=int, default=16686)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...: run it, pointed at Jaeger")
    latest = verbs.add_parser("traces", help="list the latest traces of a service")
    latest.add_argument("--service", default="stepstream")
    latest.add_argument("--limit", type=int, default=20)
    latest.add_argument("--query", default="http://127.0.0.1:16686", help="Jaeger's query address")
    show = verbs.add_parser("trace", help="print a trace as a tree")
    show.add_argument("trace_id")
    show.add_argument("--query", default="http://127.0.0.1:16686", help="Jaeger's query address")
    args = parser.parse_args()
    if args.verb == "build":
        print(build())
    elif args.verb == "run":
        jaeger = Jaeger(build(), args.otlp_port, args.query_port)
        jaeger.start()
        print(f"Jaeger {JAEGER_VERSION}: query API {jaeger.query_url}/api/traces (logs: {jaeger.log})")
        print("Point stepstream (server and sidecar) at it:")
        print(f"  export OTEL_EXPORTER_OTLP_ENDPOINT={jaeger.otlp_endpoint}", flush=True)
        try:
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if command:
                env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint}
                subprocess.run(command, env=env, check=False)
                print("Jaeger keeps the traces until Ctrl-C: python tools/jaeger.py traces", flush=True)
            assert jaeger.proc is not None
            jaeger.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            jaeger.stop()
    elif args.verb == "traces":
        query = f"/api/traces?service={args.service}&limit={args.limit}&lookback=1h"
        with urllib.request.urlopen(args.query + query, timeout=5) as reply:
            found = json.loads(reply.read()).get("data") or []
        for trace in sorted(found, key=lambda t: min(s["startTime"] for s in t["spans"])):
            runs = sorted(
                {s["operationName"] for s in trace["spans"] if s["operationName"].startswith("invoke_")}
            )
            print(trace["traceID"], len(trace["spans"]), "spans", ", ".join(runs))
    else:
        with urllib.request.urlopen(f"{args.query}/api/traces/{args.trace_id}", timeout=5) as reply:
            data = json.loads(reply.read()).get("data") or []
        if not data:
            sys.exit(f"no trace {args.trace_id} in Jaeger at {args.query}")
        print("\n".join(tree(data[0])))


if __name__ == "__main__":
    main()
