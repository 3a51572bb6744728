"""Rendering and reading the deploy/ manifests, and the offline schemas the validators use.

`make deploy-tools` (deploy/validators.sh) installs the pinned validators into
build/deploy-tools; the Kubernetes JSON schemas come from the kubernetes-validate
package. Nothing here reaches the network.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
TOOLS = ROOT / "build" / "deploy-tools"
# The oldest Kubernetes on which every feature used is on by default (native
# sidecars, the preStop sleep action), and the newest whose schemas are bundled.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KEDA_CRD = "keda.sh_scaledobjects.yaml"

Doc = dict[str, Any]


def tool(name: str) -> pathlib.Path:
    """A validator installed by `make deploy-tools`; a clear error when it is missing."""
    path = TOOLS / "bin" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make deploy-tools` (deploy/validators.sh)")
    return path


def kustomize_build(folder: pathlib.Path) -> list[Doc]:
    """The rendered manifests of a kustomization folder."""
    out = subprocess.run(
        [str(tool("kustomize")), "build", str(folder)], capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise AssertionError(f"kustomize build {folder} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    """The one object of this kind named `name`, or `name` plus a generator's hash suffix."""
    of_kind = [d for d in docs if d["kind"] == kind]
    exact = [d for d in of_kind if d["metadata"]["name"] == name]
    hashed = re.compile(rf"{re.escape(name)}-[a-z0-9]{{10}}")
    matches = exact or [d for d in of_kind if hashed.fullmatch(d["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name}, found {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def kinds(docs: Iterable[Doc]) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs)


def container(pod_spec: Mapping[str, Any], name: str, init: bool = False) -> Doc:
    listed = pod_spec.get("initContainers" if init else "containers", [])
    found: list[Doc] = [c for c in listed if c["name"] == name]
    assert len(found) == 1, f"no {'init ' if init else ''}container {name!r}"
    return found[0]


def option(args: list[str], flag: str) -> str:
    """The value after `flag` in a command line (each flag given once)."""
    assert args.count(flag) == 1, f"{flag} given {args.count(flag)} times in {args}"
    return args[args.index(flag) + 1]


def port_number(container_spec: Mapping[str, Any], port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container_spec.get("ports", []) if p.get("name") == port]
    assert named, f"container {container_spec['name']} has no port named {port!r}"
    return int(named[0])


def write_yaml(path: pathlib.Path, docs: Iterable[Doc]) -> pathlib.Path:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


# --- schemas for kubeconform, from what kubernetes-validate bundles -----------------


def bundled_schema_dir(version: str) -> pathlib.Path:
    base = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = base / f"v{version}-local-strict"
    assert folder.is_dir(), f"kubernetes-validate bundles no schemas for {version}"
    return folder


def kubeconform_schemas(version: str) -> pathlib.Path:
    """kubernetes-validate's strict schemas, readable by kubeconform from disk.

    Each bundled schema names itself `https://kubernetes.io/api/...` and refers to
    `/api/_definitions.json`, which kubeconform would try to fetch from the web;
    the copy drops the ids, so every `$ref` resolves to the file beside it.
    Returns the folder holding `v<version>-local-strict/`.
    """
    source = bundled_schema_dir(version)
    root = TOOLS / "schemas" / f"kubernetes-validate-{kubernetes_validate.__version__}"
    target = root / source.name
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for file in source.glob("*.json"):
            schema = json.loads(file.read_text())
            (target / file.name).write_text(json.dumps(_local_refs(schema)))
        (target / ".complete").touch()
    return root


def _local_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _local_refs(v) for k, v in node.items() if k != "$id"}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("/api/_definitions.json"):
            out["$ref"] = ref.removeprefix("/api/")
        return out
    if isinstance(node, list):
        return [_local_refs(v) for v in node]
    return node


def crd_schemas(crd_file: pathlib.Path, target: pathlib.Path) -> Iterator[pathlib.Path]:
    """Strict JSON schemas (`<kind>_<version>.json`) of a CustomResourceDefinition's versions.

    Strict as kubeconform's own CRD conversion is: an object that lists its
    properties accepts no other, unless the CRD says it keeps unknown fields.
    """
    crd = yaml.safe_load(crd_file.read_text())
    kind = crd["spec"]["names"]["kind"].lower()
    target.mkdir(parents=True, exist_ok=True)
    for version in crd["spec"]["versions"]:
        schema = _strict(version["schema"]["openAPIV3Schema"])
        path = target / f"{kind}_{version['name']}.json"
        path.write_text(json.dumps(schema))
        yield path


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    keeps_unknown = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not keeps_unknown:
        out["additionalProperties"] = False
    return out
