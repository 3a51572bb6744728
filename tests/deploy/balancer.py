"""nginx with deploy/nginx/nginx.conf, its upstreams pointed at loopback processes.

The compose file names the replicas `replica-N:50051` and nginx listens on
50051; here every such address is swapped for a process's loopback port, and
nothing else in the file changes.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping

from tests.deploy.manifests import DEPLOY

NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_conf(text: str, upstreams: Mapping[str, str], listen_port: int) -> str:
    """The config with each `server NAME` of `upstreams` and the `listen` port replaced, each exactly once."""
    for name, address in upstreams.items():
        pattern = re.compile(rf"^(\s*server\s+){re.escape(name)}(\s|;)", re.M)
        text, count = pattern.subn(rf"\g<1>{address}\g<2>", text)
        assert count == 1, f"upstream server {name} appears {count} times in {NGINX_CONF}"
    text, count = re.subn(
        r"^(\s*listen\s+)\d+(\s+http2;)", rf"\g<1>127.0.0.1:{listen_port}\g<2>", text, flags=re.M
    )
    assert count == 1, f"expected one `listen PORT http2;` in {NGINX_CONF}"
    # The HTTP API's upstreams and listener (not exercised here) move to loopback too, so that
    # nginx resolves every name it is given and binds nothing beyond loopback.
    text = re.sub(r"^(\s*server\s+)replica-\d+:(\d+)", r"\g<1>127.0.0.1:\g<2>", text, flags=re.M)
    text = re.sub(r"^(\s*listen\s+)(\d+);", rf"\g<1>127.0.0.1:{free_port()};", text, flags=re.M)
    return text


class NginxBalancer:
    def __init__(self, upstreams: Mapping[str, str]) -> None:
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
        if binary is None:
            raise RuntimeError("nginx is not installed: `make system-deps` installs the Debian package")
        self.binary = binary
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="stepstream-nginx-"))
        self.port = free_port()
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(loopback_conf(NGINX_CONF.read_text(), upstreams, self.port))
        self.log = self.dir / "nginx.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        directives = f"pid {self.dir / 'nginx.pid'}; daemon off;"
        cmd = [self.binary, "-e", "stderr", "-p", str(self.dir), "-c", str(self.conf), "-g", directives]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
