"""Every rendered manifest passes two strict schema validators, offline.

kubernetes-validate (its bundled schemas) and kubeconform (the same schemas
made local, plus KEDA's ScaledObject CRD at a pinned version), each against the
oldest and the newest Kubernetes the manifests are written for. A broken copy
of the manifests must fail both, so the checks are known to bite.
"""

from __future__ import annotations

import copy
import pathlib
import subprocess
import sys

import pytest

from tests.deploy.manifests import (
    KEDA_CRD,
    KUBERNETES_VERSIONS,
    TOOLS,
    Doc,
    container,
    crd_schemas,
    find,
    kubeconform_schemas,
    tool,
    write_yaml,
)

RENDERS = ("base", "dev", "with_keda")


def kubernetes_validate(files: list[pathlib.Path], version: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def kubeconform(
    files: list[pathlib.Path], version: str, crds: pathlib.Path
) -> subprocess.CompletedProcess[str]:
    schemas = kubeconform_schemas(version)
    cmd = [
        str(tool("kubeconform")),
        "-strict",
        "-summary",
        "-kubernetes-version",
        version,
        "-schema-location",
        f"{schemas}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/"
        "{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-schema-location",
        f"{crds}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        *map(str, files),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def crds(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    crd = TOOLS / "crds" / KEDA_CRD
    assert crd.exists(), f"{crd} is missing: run `make deploy-tools`"
    target = tmp_path_factory.mktemp("crd-schemas")
    assert [p.name for p in crd_schemas(crd, target)] == ["scaledobject_v1alpha1.json"]
    return target


@pytest.fixture(scope="module")
def rendered_files(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pathlib.Path]:
    folder = tmp_path_factory.mktemp("rendered")
    return {name: write_yaml(folder / f"{name}.yaml", request.getfixturevalue(name)) for name in RENDERS}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_strict(
    request: pytest.FixtureRequest, rendered_files: dict[str, pathlib.Path], version: str
) -> None:
    result = kubernetes_validate(list(rendered_files.values()), version)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every object was checked against a schema, except KEDA's (kubeconform checks that one).
    docs: list[Doc] = [d for name in RENDERS for d in request.getfixturevalue(name)]
    core = [d for d in docs if d["kind"] != "ScaledObject"]
    passed = [line for line in result.stdout.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(core), result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubeconform_strict(
    request: pytest.FixtureRequest, rendered_files: dict[str, pathlib.Path], crds: pathlib.Path, version: str
) -> None:
    result = kubeconform(list(rendered_files.values()), version, crds)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(request.getfixturevalue(name)) for name in RENDERS)
    assert f"{count} resources found in {len(RENDERS)} files - Valid: {count}," in result.stdout, (
        result.stdout
    )


def broken(docs: list[Doc]) -> list[Doc]:
    """The same manifests with one misspelt field in the server's probe."""
    docs = copy.deepcopy(docs)
    pod = find(docs, "Deployment", "stepstream")["spec"]["template"]["spec"]
    container(pod, "server")["readinessProbe"]["grpc"]["prot"] = 50051
    return docs


def test_both_validators_refuse_an_unknown_field(
    with_keda: list[Doc], crds: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    bad = write_yaml(tmp_path / "bad.yaml", broken(with_keda))
    version = KUBERNETES_VERSIONS[-1]
    by_kv = kubernetes_validate([bad], version)
    assert by_kv.returncode != 0 and "'prot' was unexpected" in by_kv.stdout + by_kv.stderr
    by_kc = kubeconform([bad], version, crds)
    assert by_kc.returncode != 0 and "prot" in by_kc.stdout


def test_kubeconform_checks_the_scaledobject_against_kedas_crd(
    with_keda: list[Doc], crds: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    docs = copy.deepcopy(with_keda)
    find(docs, "ScaledObject", "stepstream")["spec"]["minReplicas"] = 3  # KEDA's name: minReplicaCount
    result = kubeconform([write_yaml(tmp_path / "bad.yaml", docs)], KUBERNETES_VERSIONS[-1], crds)
    assert result.returncode != 0 and "minReplicas" in result.stdout, result.stdout


def test_native_sidecar_fields_need_a_recent_kubernetes(base: list[Doc], tmp_path: pathlib.Path) -> None:
    # The schemas know their versions: 1.28 has no preStop sleep action, so the
    # floor in KUBERNETES_VERSIONS is a real one.
    result = kubernetes_validate([write_yaml(tmp_path / "base.yaml", base)], "1.28.0")
    assert result.returncode != 0 and "'sleep' was unexpected" in result.stdout + result.stderr
