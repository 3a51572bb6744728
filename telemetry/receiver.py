"""A small OTLP/gRPC trace receiver on a loopback port, for tests and benchmarks.

It speaks the collector's TraceService (the wire protocol of Jaeger's and the
OpenTelemetry Collector's port 4317), so processes export to it with nothing
but OTEL_EXPORTER_OTLP_ENDPOINT. It keeps the spans it receives (or, as a
benchmark's sink, only counts them).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclasses.dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    service: str
    instance: str
    attributes: dict[str, Any]
    # Span ids this span links to.
    links: tuple[str, ...]
    start_ns: int
    end_ns: int


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


class OtlpReceiver:
    def __init__(self, keep_spans: bool = True) -> None:
        self.keep_spans = keep_spans
        self.requests = 0
        self.spans_received = 0
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(4), options=[("grpc.so_reuseport", 0)])
        if self.keep_spans:
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
                _Servicer(self), server
            )
        else:
            handler = grpc.unary_unary_rpc_method_handler(self._count)
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(_EXPORT.split("/")[1], {"Export": handler}),)
            )
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self.endpoint

    def _count(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        parsed = trace_service_pb2.ExportTraceServiceRequest.FromString(request)
        count = sum(len(ss.spans) for rs in parsed.resource_spans for ss in rs.scope_spans)
        with self._lock:
            self.requests += 1
            self.spans_received += count
        return b""  # an empty ExportTraceServiceResponse

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(1).wait()
            self._server = None

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            service=resource.get("service.name", ""),
                            instance=resource.get("service.instance.id", ""),
                            attributes=_attributes(span.attributes),
                            links=tuple(link.span_id.hex() for link in span.links),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans_received += len(received)
            self._spans.extend(received)

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], timeout: float = 20.0
    ) -> list[ReceivedSpan]:
        """The spans received, once `condition` holds for them; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if condition(spans):
                return spans
            if time.monotonic() >= deadline:
                raise AssertionError(f"spans never met the condition; received {len(spans)}")
            time.sleep(0.05)


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()
