"""In-memory OpenTelemetry for one test: spans and metrics a test can read back."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stepstream.server.core.app import Core
from stepstream.server.settings import ServerSettings
from stepstream.telemetry import Telemetry, installed
from tests.support import GRAPHS_CONFIG


@dataclasses.dataclass
class Recorded:
    telemetry: Telemetry
    exporter: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def children(self, parent: ReadableSpan, prefix: str = "") -> list[ReadableSpan]:
        parent_id = parent.context.span_id
        found = [
            s
            for s in self.spans()
            if s.parent is not None and s.parent.span_id == parent_id and s.name.startswith(prefix)
        ]
        return sorted(found, key=lambda s: s.start_time or 0)

    def metric_points(self, name: str) -> list[object]:
        data = self.metrics.get_metrics_data()
        points: list[object] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = Telemetry.of([SimpleSpanProcessor(exporter)], [reader])
    with installed(telemetry):
        yield Recorded(telemetry, exporter, reader)
    telemetry.shutdown()


def settings(db: pathlib.Path, **overrides: object) -> ServerSettings:
    return ServerSettings(
        db_url=f"sqlite+aiosqlite:///{db}",
        config_path=str(GRAPHS_CONFIG),
        **overrides,
    )


@pytest.fixture
async def core(recorded: Recorded, tmp_path: pathlib.Path) -> AsyncIterator[Core]:
    app = Core(settings(tmp_path / "db.sqlite", replica="replica-a"))
    await app.start()
    yield app
    await app.stop(grace=0)
