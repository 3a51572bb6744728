"""The rendered Kubernetes manifests are wired as docs/deploy.md says.

The sidecar is a native one and is what the server dials; the probes ask
grpc.health.v1 on the ports the processes listen on; the grace period covers
the preStop pause plus the server's drain; the autoscalers target the Deployment;
the config maps hold files the real loaders accept.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from stepstream.ratelimiter.config import load_settings
from stepstream.ratelimiter.server import SERVICE_NAME as LIMITER_SERVICE
from stepstream.server.core import records as rec
from stepstream.server.core.registry import read_config
from tests.deploy.manifests import Doc, container, find, kinds, option, port_number

pytestmark = pytest.mark.process

SERVER_PORT = 50051
# LangGraph's HTTP API (--http-port), served beside gRPC by the same container.
HTTP_PORT = 8123
# Seconds a drain may still need after --grace: the server's own stop (1 s) and
# slack for a slow node.
DRAIN_MARGIN = 5


def pod_spec(docs: list[Doc]) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "Deployment", "stepstream")["spec"]["template"]["spec"]
    return spec


def pod_labels(docs: list[Doc]) -> dict[str, str]:
    labels: dict[str, str] = find(docs, "Deployment", "stepstream")["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_limiter_is_a_native_sidecar_the_server_dials(base: list[Doc]) -> None:
    pod = pod_spec(base)
    sidecar = container(pod, "ratelimiter", init=True)
    server = container(pod, "server")
    assert sidecar["restartPolicy"] == "Always"  # native sidecar: up before the server, down after it
    assert [c["name"] for c in pod["initContainers"]] == ["ratelimiter"]
    assert sidecar["image"] == server["image"]
    assert sidecar["args"][0] == "ratelimiter" and server["args"][0] == "serve"
    limiter_port = int(option(sidecar["args"], "--port"))
    assert port_number(sidecar, "limiter-grpc") == limiter_port
    assert option(server["args"], "--ratelimiter") == f"127.0.0.1:{limiter_port}"
    assert option(sidecar["args"], "--redis") == "$(REDIS_URL)"
    redis = next(e for e in sidecar["env"] if e["name"] == "REDIS_URL")
    assert redis["valueFrom"]["secretKeyRef"] == {"name": "stepstream-backends", "key": "redis-url"}


def test_probes_ask_grpc_health_on_the_ports_the_processes_listen_on(base: list[Doc]) -> None:
    pod = pod_spec(base)
    server = container(pod, "server")
    sidecar = container(pod, "ratelimiter", init=True)
    assert int(option(server["args"], "--port")) == SERVER_PORT == port_number(server, "grpc")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"] == {"port": SERVER_PORT}, probe  # "" = the whole server
    limiter_port = int(option(sidecar["args"], "--port"))
    assert sidecar["readinessProbe"]["grpc"] == {
        "port": limiter_port,
        "service": LIMITER_SERVICE,  # NOT_SERVING only when it fails closed without Redis
    }
    assert sidecar["livenessProbe"]["grpc"] == {"port": limiter_port}
    # The kubelet probes the pod's address, so both listen on every interface.
    assert option(server["args"], "--host") == "0.0.0.0" == option(sidecar["args"], "--host")


def test_the_replica_is_named_after_its_pod(base: list[Doc]) -> None:
    server = container(pod_spec(base), "server")
    assert option(server["args"], "--replica") == "$(POD_NAME)"
    pod_name = next(e for e in server["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_grace_period_covers_the_prestop_pause_and_the_drain(base: list[Doc]) -> None:
    pod = pod_spec(base)
    server = container(pod, "server")
    pause = server["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(option(server["args"], "--grace"))
    assert pause >= 1 and drain >= 1
    assert pod["terminationGracePeriodSeconds"] >= pause + drain + DRAIN_MARGIN


def test_the_server_uses_the_database_the_migration_job_migrates(base: list[Doc]) -> None:
    server = container(pod_spec(base), "server")
    job = find(base, "Job", "stepstream-migrate")
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    assert "--no-migrate" in server["args"]
    assert migrate["args"][:2] == ["db", "upgrade"]
    assert option(migrate["args"], "--db") == option(server["args"], "--db") == "$(DATABASE_URL)"
    for spec in (server, migrate):
        url = next(e for e in spec["env"] if e["name"] == "DATABASE_URL")
        assert url["valueFrom"]["secretKeyRef"] == {"name": "stepstream-backends", "key": "database-url"}
    assert migrate["image"] == server["image"]


def test_hpa_scales_the_deployment_on_the_server_container(base: list[Doc]) -> None:
    hpa = find(base, "HorizontalPodAutoscaler", "stepstream")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stepstream"}
    assert 3 <= hpa["minReplicas"] < hpa["maxReplicas"]
    [metric] = hpa["metrics"]
    assert metric["containerResource"]["container"] == "server"
    assert metric["containerResource"]["name"] == "cpu"
    assert "replicas" not in find(base, "Deployment", "stepstream")["spec"]  # the HPA owns the count
    assert hpa["behavior"]["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


def test_pdb_and_services_select_the_server_pods(base: list[Doc]) -> None:
    labels = pod_labels(base)
    server = container(pod_spec(base), "server")
    pdb = find(base, "PodDisruptionBudget", "stepstream")["spec"]
    assert selects(pdb["selector"]["matchLabels"], labels) and pdb["maxUnavailable"] == 1
    for name in ("stepstream", "stepstream-headless"):
        service = find(base, "Service", name)["spec"]
        assert selects(service["selector"], labels)
        ports = {p["name"]: p for p in service["ports"]}
        assert port_number(server, ports["grpc"]["targetPort"]) == SERVER_PORT
        assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
        assert port_number(server, ports["http"]["targetPort"]) == HTTP_PORT
        assert str(HTTP_PORT) in server["args"][server["args"].index("--http-port") + 1]
    assert find(base, "Service", "stepstream-headless")["spec"]["clusterIP"] == "None"


def test_network_policy_admits_the_api_and_not_the_sidecar(base: list[Doc]) -> None:
    policy = find(base, "NetworkPolicy", "stepstream-server")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels(base))
    assert policy["policyTypes"] == ["Ingress"]
    admitted = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert admitted == {SERVER_PORT, HTTP_PORT}


def mounted_file(
    docs: list[Doc], pod: dict[str, Any], spec: Doc, flag: str, tmp: pathlib.Path
) -> pathlib.Path:
    """The file a container's `flag` names, taken from the ConfigMap mounted there."""
    path = pathlib.PurePosixPath(option(spec["args"], flag))
    mount = next(m for m in spec["volumeMounts"] if path.parent == pathlib.PurePosixPath(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = find(docs, "ConfigMap", volume["configMap"]["name"].rsplit("-", 1)[0])
    assert config_map["metadata"]["name"] == volume["configMap"]["name"]  # the generator's hashed name
    local = tmp / path.name
    local.write_text(config_map["data"][path.name])
    return local


def test_config_maps_hold_files_the_loaders_accept(base: list[Doc], tmp_path: pathlib.Path) -> None:
    pod = pod_spec(base)
    graphs = mounted_file(base, pod, container(pod, "server"), "--config", tmp_path)
    limits = mounted_file(base, pod, container(pod, "ratelimiter", init=True), "--config", tmp_path)
    [spec] = read_config(graphs)
    # The graph file is where the image puts the examples (deploy/Dockerfile: /app/examples).
    module_path = spec.target.rpartition(":")[0]
    assert module_path == "/app/examples/research_assistant/graph.py"
    assert (pathlib.Path(__file__).parents[2] / "examples/research_assistant/graph.py").exists()
    settings = load_settings(limits)
    assert set(settings.limits) == {"wikipedia", "arxiv"}
    hpa = find(base, "HorizontalPodAutoscaler", "stepstream")["spec"]
    # Without Redis each sidecar grants limit / expected_replicas: all of them together stay under it.
    assert settings.expected_replicas >= hpa["maxReplicas"]
    assert json.loads(graphs.read_text())["graphs"]


def test_containers_run_as_non_root_with_limits(dev: list[Doc]) -> None:
    workloads = [d for d in dev if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    assert len(workloads) == 6
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        for spec in pod.get("initContainers", []) + pod["containers"]:
            where = f"{workload['metadata']['name']}/{spec['name']}"
            assert spec["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert spec["resources"]["requests"] and spec["resources"]["limits"]["memory"], where


def test_dev_overlay_brings_the_backends_the_base_expects(dev: list[Doc]) -> None:
    assert {("Namespace", "stepstream-dev")} <= set(kinds(dev))
    assert all(d["metadata"].get("namespace") == "stepstream-dev" for d in dev if d["kind"] != "Namespace")
    for service in ("postgres", "redis", "jaeger", "mockapi"):
        find(dev, "Service", service)
    secret = find(dev, "Secret", "stepstream-backends")
    pod = pod_spec(dev)
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in pod["containers"] + pod["initContainers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {secret["metadata"]["name"]}  # the generator's hashed name, rewritten everywhere
    env = find(dev, "ConfigMap", "stepstream-env")["data"]
    jaeger_otlp = next(p for p in find(dev, "Service", "jaeger")["spec"]["ports"] if p["name"] == "otlp-grpc")
    assert (
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://jaeger:{jaeger_otlp['port']}" == "http://jaeger:4317"
    )
    mockapi = find(dev, "Service", "mockapi")["spec"]["ports"][0]["port"]
    assert env["STEPSTREAM_MOCKAPI_URL"] == f"http://mockapi:{mockapi}"
    assert container(pod, "server")["image"] == "stepstream:dev"


def test_otel_service_names_tell_server_and_sidecar_apart(base: list[Doc]) -> None:
    pod = pod_spec(base)
    names = {}
    for spec in (container(pod, "server"), container(pod, "ratelimiter", init=True)):
        env = {e["name"]: e.get("value") for e in spec["env"]}
        names[spec["name"]] = env["OTEL_SERVICE_NAME"]
        assert "service.instance.id=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
        assert [ref["configMapRef"]["name"] for ref in spec["envFrom"]] == [
            find(base, "ConfigMap", "stepstream-env")["metadata"]["name"]
        ]
    assert names == {"server": "stepstream", "ratelimiter": "stepstream-ratelimiter"}


def test_keda_component_replaces_the_hpa_with_a_scaledobject(with_keda: list[Doc]) -> None:
    assert not [d for d in with_keda if d["kind"] == "HorizontalPodAutoscaler"]
    scaled = find(with_keda, "ScaledObject", "stepstream")["spec"]
    assert scaled["scaleTargetRef"] == {"name": "stepstream"}
    assert scaled["minReplicaCount"] >= 3
    triggers = {t["type"]: t for t in scaled["triggers"]}
    assert set(triggers) == {"postgresql", "cpu"}
    server = container(pod_spec(with_keda), "server")
    # KEDA reads the connection string from the scale target's container env.
    assert triggers["postgresql"]["metadata"]["connectionFromEnv"] in {e["name"] for e in server["env"]}
    assert triggers["cpu"]["metadata"]["containerName"] == "server"


@pytest.fixture
def keda_query(with_keda: list[Doc]) -> str:
    trigger = next(
        t
        for t in find(with_keda, "ScaledObject", "stepstream")["spec"]["triggers"]
        if t["type"] == "postgresql"
    )
    query: str = trigger["metadata"]["query"]
    return query


async def test_kedas_queue_depth_query_counts_queued_runs_on_a_migrated_database(
    keda_query: str, postgres_url: str
) -> None:
    import asyncio

    import sqlalchemy as sa

    from stepstream.server.storage.db import create_engine, upgrade
    from tests.pgserver import create_database

    url = await asyncio.to_thread(create_database, postgres_url)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(sa.text(keda_query))).scalar_one() == 0
            now = 0.0
            statuses = (
                rec.RunStatus.QUEUED,
                rec.RunStatus.QUEUED,
                rec.RunStatus.RUNNING,
                rec.RunStatus.SUCCEEDED,
                rec.RunStatus.INTERRUPTED,
            )
            for run_id, status in enumerate(statuses):
                await conn.execute(
                    sa.text(
                        "INSERT INTO runs (run_id, owner, session_id, graph_id, status, created_at) "
                        "VALUES (:run_id, 'local', 's', 'g', :status, :now)"
                    ),
                    {"run_id": f"r{run_id}", "status": status, "now": now},
                )
            assert (await conn.execute(sa.text(keda_query))).scalar_one() == 2
    finally:
        await engine.dispose()
