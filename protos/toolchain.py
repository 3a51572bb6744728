"""The pinned tools that act on protos/ in other languages, installed once per version.

Every tool comes from its own ecosystem's registry through that ecosystem's client:

- Go: `go install module@version` (protoc-gen-go at the google.golang.org/protobuf
  version of clients/go/go.mod, protoc-gen-go-grpc, grpcurl and ghz at the versions below);
- TypeScript: ts-proto from clients/typescript's lockfile (`npm ci`), and buf from
  protos/'s lockfile;
- Java: protoc (which carries the Java generator) and protoc-gen-grpc-java at the
  protobuf.version / grpc.version properties of clients/java/pom.xml, copied out of
  Maven Central with `mvn dependency:copy`.

Binaries go to a cache folder keyed by version ($STEPSTREAM_TOOLS, else
~/.cache/stepstream/tools), so a second checkout on the same machine reuses them.
"""

from __future__ import annotations

import os
import pathlib
import platform
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
GO_CLIENT = ROOT / "clients" / "go"
TS_CLIENT = ROOT / "clients" / "typescript"
JAVA_CLIENT = ROOT / "clients" / "java"
PROTOS = ROOT / "protos"

PROTOC_GEN_GO_GRPC = "v1.6.2"
GRPCURL = "v1.9.4"
# ghz, the gRPC load tool, asks for grpc.reflection.v1 first (tests/server/api/test_reflection_v1.py).
GHZ = "v0.121.0"


class ToolchainMissing(RuntimeError):
    """A language toolchain (go, npm, mvn) is not installed."""


def tools_dir() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache" / "stepstream" / "tools"
    return pathlib.Path(os.environ.get("STEPSTREAM_TOOLS", default))


def require(command: str, purpose: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise ToolchainMissing(f"`{command}` is not on PATH; it is needed {purpose} (.ci/run installs it)")
    return path


def run(cmd: list[str], cwd: pathlib.Path = ROOT, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")


# -- Go ------------------------------------------------------------------------


def go_module_version(module: str) -> str:
    """The version clients/go/go.mod requires of `module`."""
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)", (GO_CLIENT / "go.mod").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"clients/go/go.mod does not require {module}")
    return match.group(1)


def go_tool(package: str, version: str) -> pathlib.Path:
    """`go install package@version` into a folder of that version; the binary's path."""
    target = tools_dir() / "go" / f"{package.replace('/', '_')}@{version}"
    binary = target / package.rsplit("/", 1)[1]
    if not binary.exists():
        go = require("go", f"to install {package}")
        run([go, "install", f"{package}@{version}"], env={"GOBIN": str(target)})
    return binary


def protoc_gen_go() -> pathlib.Path:
    version = go_module_version("google.golang.org/protobuf")
    return go_tool("google.golang.org/protobuf/cmd/protoc-gen-go", version)


def protoc_gen_go_grpc() -> pathlib.Path:
    return go_tool("google.golang.org/grpc/cmd/protoc-gen-go-grpc", PROTOC_GEN_GO_GRPC)


def grpcurl() -> pathlib.Path:
    return go_tool("github.com/fullstorydev/grpcurl/cmd/grpcurl", GRPCURL)


def ghz() -> pathlib.Path:
    return go_tool("github.com/bojand/ghz/cmd/ghz", GHZ)


# -- npm -----------------------------------------------------------------------


def npm_ci(folder: pathlib.Path) -> pathlib.Path:
    """`npm ci` in folder unless its node_modules matches the lockfile already; its .bin folder."""
    lock = folder / "package-lock.json"
    installed = folder / "node_modules" / ".package-lock.json"
    # npm writes node_modules/.package-lock.json on every install: if the lockfile is not
    # newer, node_modules holds what it pins.
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm = require("npm", f"to install the packages of {folder.relative_to(ROOT)}")
        run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder)
    return folder / "node_modules" / ".bin"


def protoc_gen_ts_proto() -> pathlib.Path:
    return npm_ci(TS_CLIENT) / "protoc-gen-ts_proto"


def buf() -> pathlib.Path:
    return npm_ci(PROTOS) / "buf"


# -- Maven ---------------------------------------------------------------------


def pom_property(name: str) -> str:
    match = re.search(rf"<{re.escape(name)}>([^<]+)</", (JAVA_CLIENT / "pom.xml").read_text())
    if match is None:
        raise RuntimeError(f"clients/java/pom.xml has no <{name}> property")
    return match.group(1).strip()


def os_classifier() -> str:
    """The classifier of the native executables protobuf and grpc-java publish to Maven Central."""
    system = {"Linux": "linux", "Darwin": "osx", "Windows": "windows"}[platform.system()]
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch_64", "arm64": "aarch_64"}
    return f"{system}-{arch[platform.machine().lower()]}"


def maven_exe(group: str, artifact: str, version: str) -> pathlib.Path:
    """A native executable published on Maven Central, copied out by Maven and made executable."""
    classifier = os_classifier()
    target = tools_dir() / "maven"
    exe = target / f"{artifact}-{version}-{classifier}.exe"
    if not exe.exists():
        mvn = require("mvn", f"to fetch {artifact} from Maven Central")
        coordinates = f"{group}:{artifact}:{version}:exe:{classifier}"
        run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={coordinates}", f"-DoutputDirectory={target}"],
            cwd=JAVA_CLIENT,
        )
        exe.chmod(0o755)
    return exe


def java_protoc() -> pathlib.Path:
    return maven_exe("com.google.protobuf", "protoc", pom_property("protobuf.version"))


def protoc_gen_grpc_java() -> pathlib.Path:
    return maven_exe("io.grpc", "protoc-gen-grpc-java", pom_property("grpc.version"))


def install_all() -> None:
    """Everything `make protos` and tests/clients use, for a fresh machine (`make tools`)."""
    tools = (
        protoc_gen_go,
        protoc_gen_go_grpc,
        grpcurl,
        ghz,
        protoc_gen_ts_proto,
        buf,
        java_protoc,
        protoc_gen_grpc_java,
    )
    for install in tools:
        print(f"{install.__name__}: {install()}", flush=True)


if __name__ == "__main__":
    try:
        install_all()
    except ToolchainMissing as missing:
        raise SystemExit(str(missing)) from missing
