"""deploy/compose.yaml loads under the Compose Specification's reference loader and is wired right.

No container engine runs here, so `docker compose config` cannot; compose-go,
the library that command is built on, loads the file instead (schema
validation, interpolation, normalisation, consistency), at a pinned version
(`make deploy-tools`). The model it prints is then checked for the topology:
three replicas, each with its own sidecar in its network namespace, migrations
once before them, and the load balancer in front of exactly those replicas.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
from typing import Any

import pytest
import yaml

from stepstream.ratelimiter.config import load_settings
from stepstream.server.core.registry import read_config
from tests.deploy.manifests import DEPLOY, option, tool

COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
REPLICAS = 3


def load(compose_file: pathlib.Path) -> subprocess.CompletedProcess[str]:
    # Only PATH from the environment: the file's own defaults are what is checked.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(compose_file.parent)}
    return subprocess.run(
        [str(tool("compose-spec")), "--format", "json", compose_file.name],
        capture_output=True,
        text=True,
        cwd=compose_file.parent,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    result = load(COMPOSE)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def seconds(duration: str) -> float:
    """A Go duration as compose-go prints it ("40s", "1m30s")."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, f"not a duration: {duration!r}"
    hours, minutes, secs = (float(p) if p else 0.0 for p in parts.groups())
    return hours * 3600 + minutes * 60 + secs


def test_reference_loader_refuses_a_broken_file(tmp_path: pathlib.Path) -> None:
    text = COMPOSE.read_text().replace("condition: service_completed_successfully", "condition: service_done")
    broken = tmp_path / "compose.yaml"
    broken.write_text(text)
    result = load(broken)
    assert result.returncode != 0 and "depends_on.migrate.condition value must be one of" in result.stderr


def test_three_replicas_each_with_its_own_sidecar(model: dict[str, Any]) -> None:
    services = model["services"]
    replicas = sorted(name for name in services if name.startswith("replica-"))
    assert replicas == [f"replica-{n}" for n in range(1, REPLICAS + 1)]
    for n in range(1, REPLICAS + 1):
        replica, limiter = services[f"replica-{n}"], services[f"limiter-{n}"]
        assert replica["command"][0] == "serve" and limiter["command"][0] == "ratelimiter"
        # The sidecar owns the network namespace, the replica joins it, as in a pod.
        assert replica["network_mode"] == f"service:limiter-{n}"
        assert f"replica-{n}" in limiter["networks"]["default"]["aliases"]
        limiter_port = option(limiter["command"], "--port")
        assert option(limiter["command"], "--host") == "127.0.0.1"
        assert option(replica["command"], "--ratelimiter") == f"127.0.0.1:{limiter_port}"
        assert option(limiter["command"], "--redis") == "redis://redis:6379/0"
        assert replica["depends_on"][f"limiter-{n}"]["condition"] == "service_healthy"
        assert limiter["depends_on"]["redis"]["condition"] == "service_healthy"
        assert replica["healthcheck"]["test"] == [
            "CMD",
            "grpc-health-probe",
            f"-addr=127.0.0.1:{option(replica['command'], '--port')}",
        ]
        assert limiter["healthcheck"]["test"] == [
            "CMD",
            "grpc-health-probe",
            f"-addr=127.0.0.1:{limiter_port}",
        ]
    instance_ids = {
        s["environment"]["OTEL_RESOURCE_ATTRIBUTES"]
        for n, s in services.items()
        if n.startswith(("replica-", "limiter-"))
    }
    assert len(instance_ids) == 2 * REPLICAS


def test_migrations_run_once_before_every_replica(model: dict[str, Any]) -> None:
    services = model["services"]
    migrate = services["migrate"]
    assert migrate["command"][:2] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"
    for n in range(1, REPLICAS + 1):
        replica = services[f"replica-{n}"]
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "--no-migrate" in replica["command"]
        assert option(replica["command"], "--db") == option(migrate["command"], "--db")
        assert option(replica["command"], "--db").startswith("postgresql://stepstream:")


def test_stop_grace_outlasts_the_drain(model: dict[str, Any]) -> None:
    for n in range(1, REPLICAS + 1):
        replica = model["services"][f"replica-{n}"]
        drain = float(option(replica["command"], "--grace"))
        assert seconds(replica["stop_grace_period"]) >= drain + 5


def nginx_upstreams(conf: str) -> tuple[list[str], int]:
    """The servers of the `stepstream` upstream and the port nginx listens on."""
    block = re.search(r"upstream stepstream \{(.*?)\}", conf, re.S)
    assert block, "no upstream stepstream"
    servers = re.findall(r"^\s*server\s+(\S+?)(?:\s[^;]*)?;", block.group(1), re.M)
    listen = re.search(r"^\s*listen\s+(\d+)\s+http2;", conf, re.M)
    assert listen, "nginx must listen with http2 for gRPC"
    return servers, int(listen.group(1))


def test_load_balancer_fronts_exactly_the_replicas(model: dict[str, Any]) -> None:
    services = model["services"]
    lb = services["lb"]
    conf = NGINX_CONF.read_text()
    servers, listen = nginx_upstreams(conf)
    expected = [
        f"replica-{n}:{option(services[f'replica-{n}']['command'], '--port')}" for n in range(1, REPLICAS + 1)
    ]
    assert servers == expected
    assert "grpc_pass grpc://stepstream;" in conf
    assert [p["target"] for p in lb["ports"]] == [listen, HTTP_PORT]
    assert {c["target"] for c in lb["configs"]} == {"/etc/nginx/nginx.conf"}
    assert pathlib.Path(model["configs"]["nginx"]["file"]) == NGINX_CONF
    assert {f"replica-{n}" for n in range(1, REPLICAS + 1)} <= {
        name for name, dep in lb["depends_on"].items() if dep["condition"] == "service_healthy"
    }


HTTP_PORT = 8123


def test_balancer_serves_langgraphs_http_api_with_unbuffered_long_streams(model: dict[str, Any]) -> None:
    # Server-sent events: nginx must pass each frame on at once, and keep a stream that waits
    # on an interrupt open far longer than its default minute.
    conf = NGINX_CONF.read_text()
    block = re.search(r"upstream stepstream_http \{(.*?)\}", conf, re.S)
    assert block, "no upstream stepstream_http"
    servers = re.findall(r"^\s*server\s+(\S+?)(?:\s[^;]*)?;", block.group(1), re.M)
    services = model["services"]
    assert servers == [
        f"replica-{n}:{option(services[f'replica-{n}']['command'], '--http-port')}"
        for n in range(1, REPLICAS + 1)
    ]
    assert re.search(rf"^\s*listen\s+{HTTP_PORT};", conf, re.M)
    for directive in ("proxy_buffering off;", "proxy_read_timeout 1h;", "proxy_http_version 1.1;"):
        assert directive in conf


def test_balancer_lets_a_session_stream_idle_while_a_person_answers() -> None:
    # nginx resets a stream after a minute without traffic either way by default,
    # which ends a session stream waiting on an interrupt (seen with these unset).
    conf = NGINX_CONF.read_text()
    for directive in ("grpc_read_timeout", "grpc_send_timeout", "client_body_timeout", "send_timeout"):
        values = re.findall(rf"^\s*{directive}\s+(\d+)([smh]);", conf, re.M)
        assert len(values) == 1, directive
        number, unit = values[0]
        assert int(number) * {"s": 1, "m": 60, "h": 3600}[unit] >= 3600, directive


def test_traces_go_to_jaeger_over_otlp_grpc(model: dict[str, Any]) -> None:
    services = model["services"]
    for name, service in services.items():
        if name.startswith(("replica-", "limiter-")):
            env = service["environment"]
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317", name
            assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc", name
            expected = "stepstream" if name.startswith("replica-") else "stepstream-ratelimiter"
            assert env["OTEL_SERVICE_NAME"] == expected, name
    assert "jaeger" in services and any(p["target"] == 16686 for p in services["jaeger"]["ports"])


def test_configs_are_the_kubernetes_ones_and_load(model: dict[str, Any], tmp_path: pathlib.Path) -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    assert raw["configs"]["graphs"]["file"] == "./kubernetes/base/config/stepstream.json"
    assert raw["configs"]["limits"]["file"] == "./kubernetes/base/config/limits.toml"
    replica, limiter = model["services"]["replica-1"], model["services"]["limiter-1"]
    graphs = pathlib.Path(model["configs"]["graphs"]["file"])
    limits = pathlib.Path(model["configs"]["limits"]["file"])
    assert [c["target"] for c in replica["configs"]] == [option(replica["command"], "--config")]
    assert [c["target"] for c in limiter["configs"]] == [option(limiter["command"], "--config")]
    assert read_config(graphs) and load_settings(limits).limits
