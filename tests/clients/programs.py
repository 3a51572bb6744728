"""Build the Go, TypeScript and Java clients once, and run their example programs.

Each example program takes the same arguments (`research ADDRESS`, `join ADDRESS
RUN_ID [AFTER_SEQ]`) and prints the same line format, so one set of tests
checks all three languages. Toolchains come from PATH (`make system-deps` installs them);
a missing one fails the test with the command to install it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "protos"))
import toolchain  # noqa: E402

LANGUAGES = ("go", "typescript", "java")
BUILD_TIMEOUT_S = 900


def run_checked(cmd: list[str], cwd: pathlib.Path, timeout: float = BUILD_TIMEOUT_S) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        command = " ".join(cmd)
        pytest.fail(f"{command} (in {cwd}) exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def tool(command: str, language: str) -> str:
    try:
        return toolchain.require(command, f"to build and run the {language} client")
    except toolchain.ToolchainMissing as missing:
        pytest.fail(str(missing))


@dataclasses.dataclass(frozen=True)
class Program:
    """A built example program: `command(*args)` is the argv that runs it."""

    language: str
    prefix: tuple[str, ...]
    cwd: pathlib.Path
    unit_tests: tuple[str, ...]

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), cwd=self.cwd, capture_output=True, text=True, timeout=timeout, check=False
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def build_go(out: pathlib.Path) -> Program:
    go = tool("go", "Go")
    binary = out / "stepstream-example"
    run_checked([go, "build", "-o", str(binary), "./cmd/stepstream-example"], toolchain.GO_CLIENT)
    return Program("go", (str(binary),), toolchain.GO_CLIENT, (go, "test", "./..."))


def build_typescript(out: pathlib.Path) -> Program:
    node = tool("node", "TypeScript")
    tool("npm", "TypeScript")
    bin_dir = toolchain.npm_ci(toolchain.TS_CLIENT)
    run_checked([str(bin_dir / "tsc"), "-p", "."], toolchain.TS_CLIENT)
    dist = toolchain.TS_CLIENT / "dist"
    example = str(dist / "examples" / "research.js")
    return Program("typescript", (node, example), toolchain.TS_CLIENT, (node, "--test", str(dist / "test")))


def build_java(out: pathlib.Path) -> Program:
    java = tool("java", "Java")
    mvn = tool("mvn", "Java")
    # Compiles the tests too; they run in test_helper_unit_tests.
    run_checked([mvn, "-q", "-B", "package", "-DskipTests"], toolchain.JAVA_CLIENT)
    target = toolchain.JAVA_CLIENT / "target"
    classpath = os.pathsep.join([str(target / "classes"), (target / "classpath.txt").read_text().strip()])
    prefix = (java, "-cp", classpath, "dev.stepstream.examples.ResearchExample")
    return Program("java", prefix, toolchain.JAVA_CLIENT, (mvn, "-q", "-B", "surefire:test"))


BUILDERS: dict[str, Callable[[pathlib.Path], Program]] = {
    "go": build_go,
    "typescript": build_typescript,
    "java": build_java,
}


@dataclasses.dataclass
class Output:
    """What an example program printed, by kind of line."""

    lines: list[list[str]]

    @classmethod
    def parse(cls, stdout: str) -> Output:
        return cls([line.split(" ", 3) for line in stdout.splitlines() if line.strip()])

    def first(self, kind: str) -> list[str]:
        found = [line for line in self.lines if line[0] == kind]
        assert found, f"no {kind!r} line in the output"
        return found[0]

    def all(self, kind: str) -> list[list[str]]:
        return [line for line in self.lines if line[0] == kind]

    def events(self, run_id: str) -> list[tuple[int, str, str]]:
        """(seq, kind, detail) of a run's events, in the order printed."""
        return [
            (int(line[2]), line[3].split(" ")[0], line[3].partition(" ")[2])
            for line in self.lines
            if line[0] == "event" and line[1] == run_id
        ]

    def answer(self, run_id: str) -> str:
        answers = [" ".join(line[2:]) for line in self.lines if line[0] == "answer" and line[1] == run_id]
        assert len(answers) == 1, f"expected one answer line for run {run_id}, got {len(answers)}"
        text: str = json.loads(answers[0])
        return text
