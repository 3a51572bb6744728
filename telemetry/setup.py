"""OpenTelemetry providers for one process, set up from the standard OTEL_* variables.

Nothing is set up, and the hooks in the code cost a None check, unless the
environment asks for it:

- traces: OTEL_TRACES_EXPORTER (otlp, console, none), or any OTLP endpoint
  (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), which
  implies otlp. OTLP goes over gRPC; the exporter reads the other
  OTEL_EXPORTER_OTLP_* variables (headers, insecure, timeout, compression),
  the batch processor reads OTEL_BSP_*.
- sampling: OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default
  parentbased_always_on: a run is traced when its caller's trace is).
- metrics: OTEL_METRICS_EXPORTER (otlp, prometheus, console, none; default
  none, since a trace store such as Jaeger takes no metrics). prometheus serves
  a scrape endpoint on OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT
  (default localhost:9464).
- OTEL_SDK_DISABLED=true turns everything off; OTEL_SERVICE_NAME and
  OTEL_RESOURCE_ATTRIBUTES name the process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

TRACE_EXPORTERS = ("otlp", "console", "none")
METRIC_EXPORTERS = ("otlp", "prometheus", "console", "none")


class TelemetryConfigError(ValueError):
    """An OTEL_* variable asks for something this process cannot do; the message says what to set."""


@dataclasses.dataclass
class Telemetry:
    """The providers hooks take their tracers and meters from; None: that signal is off.

    `span_processors` are the tracer provider's processors: spans a component
    writes whole (finished spans rebuilt from a run's events) go straight to them.
    """

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    span_processors: list[SpanProcessor] = dataclasses.field(default_factory=list)
    # Stops the Prometheus scrape endpoint, when one was started.
    _closers: list[Any] = dataclasses.field(default_factory=list)

    @classmethod
    def of(
        cls,
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
        resource: Resource | None = None,
        sampler: Sampler | None = None,
    ) -> Telemetry:
        """Providers over these processors and readers (none: that signal stays off)."""
        telemetry = cls()
        if span_processors:
            provider = TracerProvider(resource=resource or Resource.create(), sampler=sampler)
            for processor in span_processors:
                provider.add_span_processor(processor)
            telemetry.tracer_provider = provider
            telemetry.span_processors = list(span_processors)
        if metric_readers:
            telemetry.meter_provider = MeterProvider(
                resource=resource or Resource.create(), metric_readers=list(metric_readers)
            )
        return telemetry

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None

    def write_span(self, span: ReadableSpan) -> None:
        """Export a span built whole, as the provider's own spans are when they end."""
        for processor in self.span_processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        """Export what is buffered, then stop (at process exit)."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        for close in self._closers:
            close()


_current: Telemetry | None = None


def current() -> Telemetry | None:
    """What this process set up (configure_from_env or installed), or None when telemetry is off."""
    return _current


@contextlib.contextmanager
def installed(telemetry: Telemetry | None) -> Iterator[Telemetry | None]:
    """Make `telemetry` current inside the block (tests, embedding): components built there use it."""
    global _current
    previous, _current = _current, telemetry
    try:
        yield telemetry
    finally:
        _current = previous


def _names(environ: Mapping[str, str], variable: str, allowed: tuple[str, ...], default: str) -> list[str]:
    raw = environ.get(variable, "").strip().lower() or default
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in allowed:
            raise TelemetryConfigError(f"{variable}={raw!r}: {name!r} is not one of {', '.join(allowed)}")
    return [n for n in names if n != "none"]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def sampler_from_env(environ: Mapping[str, str]) -> Sampler:
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    ratio = 1.0
    if name.endswith("traceidratio") and arg:
        try:
            ratio = float(arg)
        except ValueError:
            raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a ratio in [0, 1]") from None
        if not 0.0 <= ratio <= 1.0:
            raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a ratio in [0, 1]")
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER={name!r} is not one of {', '.join(samplers)}")
    return samplers[name]


def _require_grpc(environ: Mapping[str, str], signal: str) -> None:
    for variable in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(variable, "").strip().lower()
        if protocol:
            if protocol != "grpc":
                raise TelemetryConfigError(
                    f"{variable}={protocol!r}: stepstream exports OTLP over gRPC only; set it to grpc "
                    "(and point the endpoint at the collector's gRPC port, usually 4317)"
                )
            return


def _span_exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    _require_grpc(environ, "TRACES")
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_reader(name: str, environ: Mapping[str, str], closers: list[Any]) -> MetricReader:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    if name == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "").strip() or "localhost"
        raw_port = environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "").strip() or "9464"
        try:
            port = int(raw_port)
        except ValueError:
            raise TelemetryConfigError(f"OTEL_EXPORTER_PROMETHEUS_PORT={raw_port!r} is not a port") from None
        reader = PrometheusMetricReader()
        try:
            server, _ = start_http_server(port, host)
        except OSError as exc:
            raise TelemetryConfigError(
                f"cannot serve Prometheus metrics on {host}:{port} ({exc.strerror}); "
                "set OTEL_EXPORTER_PROMETHEUS_PORT to a free port"
            ) from None
        closers.append(server.shutdown)
        return reader
    _require_grpc(environ, "METRICS")
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return PeriodicExportingMetricReader(OTLPMetricExporter())


def configure_from_env(
    service_name: str, instance_id: str, environ: Mapping[str, str] | None = None
) -> Telemetry:
    """Set up this process's providers from the environment and make them current.

    `service_name` applies when OTEL_SERVICE_NAME is unset; `instance_id` tells
    replicas apart. Raises TelemetryConfigError for a setting it cannot honour.
    """
    global _current
    env = os.environ if environ is None else environ
    telemetry = Telemetry()
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        _current = None
        return telemetry
    otlp_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    trace_exporters = _names(
        env, "OTEL_TRACES_EXPORTER", TRACE_EXPORTERS, "otlp" if otlp_endpoint else "none"
    )
    metric_exporters = _names(env, "OTEL_METRICS_EXPORTER", METRIC_EXPORTERS, "none")
    if not trace_exporters and not metric_exporters:
        _current = None
        return telemetry
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the process's own names.
    resource = Resource.create({SERVICE_NAME: service_name, SERVICE_INSTANCE_ID: instance_id}).merge(
        OTELResourceDetector().detect()
    )
    processors = [BatchSpanProcessor(_span_exporter(name, env)) for name in trace_exporters]
    closers: list[Any] = []
    readers = [_metric_reader(name, env, closers) for name in metric_exporters]
    telemetry = Telemetry.of(processors, readers, resource, sampler_from_env(env) if processors else None)
    telemetry._closers = closers
    _current = telemetry
    return telemetry
