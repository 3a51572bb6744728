"""Telemetry from the standard OTEL_* variables: off when unset, clear errors for what cannot be honoured."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from stepstream import telemetry
from stepstream.telemetry import Telemetry, TelemetryConfigError, configure_from_env
from stepstream.telemetry.setup import sampler_from_env
from tests.support import GRAPHS_CONFIG, ROOT

pytestmark = pytest.mark.process


@pytest.fixture(autouse=True)
def restore_current() -> Iterator[None]:
    with telemetry.installed(None):
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_is_set_up_when_nothing_is_configured() -> None:
    configured = configure_from_env("stepstream", "r1", {})
    assert not configured.enabled
    assert telemetry.current() is None


def test_an_otlp_endpoint_turns_tracing_on_and_names_the_process() -> None:
    configured = configure_from_env(
        "stepstream", "replica-1", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    )
    try:
        assert configured.tracer_provider is not None and configured.meter_provider is None
        assert telemetry.current() is configured
        attributes = configured.tracer_provider.resource.attributes
        assert attributes["service.name"] == "stepstream"
        assert attributes["service.instance.id"] == "replica-1"
    finally:
        configured.shutdown()


def test_sdk_disabled_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
    assert not configure_from_env("stepstream", "r1", env).enabled
    assert telemetry.current() is None


def test_an_exporter_set_to_none_is_off() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_TRACES_EXPORTER": "none"}
    assert not configure_from_env("stepstream", "r1", env).enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin': 'zipkin' is not one of"),
        ({"OTEL_METRICS_EXPORTER": "statsd"}, "OTEL_METRICS_EXPORTER='statsd': 'statsd' is not one of"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "exports OTLP over gRPC only",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "sometimes"},
            "OTEL_TRACES_SAMPLER='sometimes'",
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "2",
            },
            "is not a ratio in [0, 1]",
        ),
        ({"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "x"}, "is not a port"),
    ],
)
def test_settings_it_cannot_honour_are_refused_with_what_to_set(env: dict[str, str], message: str) -> None:
    with pytest.raises(TelemetryConfigError) as raised:
        configure_from_env("stepstream", "r1", env)
    assert message in str(raised.value)


def test_the_sampler_setting() -> None:
    sampler = sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    assert isinstance(sampler, ParentBased)
    assert "TraceIdRatioBased{0.25}" in sampler.get_description()
    ratio = sampler_from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.5
    assert "AlwaysOnSampler" in sampler_from_env({}).get_description()


def test_prometheus_metrics_are_served_for_scraping() -> None:
    port = _free_port()
    env = {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": str(port)}
    configured = configure_from_env("stepstream", "r1", {**env, "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1"})
    try:
        assert configured.meter_provider is not None and configured.tracer_provider is None
        counter = configured.meter_provider.get_meter("test").create_counter("stepstream.test.things")
        counter.add(3)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "stepstream_test_things_total" in body
    finally:
        configured.shutdown()


def test_serve_refuses_a_bad_telemetry_setting_with_exit_code_2(tmp_path: object) -> None:
    cmd = [
        sys.executable,
        "-m",
        "stepstream.cli.main",
        "serve",
        "--port",
        "0",
        "--config",
        str(GRAPHS_CONFIG),
    ]
    done = subprocess.run(
        [*cmd, "--db", f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"],
        env={"PATH": "", "OTEL_TRACES_EXPORTER": "jaeger", "HOME": str(tmp_path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "OTEL_TRACES_EXPORTER='jaeger'" in done.stderr


def test_telemetry_object_without_providers_is_off() -> None:
    assert not Telemetry().enabled
