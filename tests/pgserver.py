"""A throwaway PostgreSQL server for tests, started from the binaries installed on the machine.

`make system-deps` apt-installs `postgresql` (Debian: /usr/lib/postgresql/<version>/bin). The
cluster lives in a temporary folder, listens on 127.0.0.1 on a free port (and on a
unix socket in the same folder), trusts local connections, and is stopped by
`pg_ctl stop` at the end. PostgreSQL refuses to run as root: as root, every command
runs as the `postgres` user, which then owns the folder.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

BIN_GLOB = "/usr/lib/postgresql/*/bin"
RUN_AS = "postgres"


def find_bin_dir() -> pathlib.Path:
    """The newest installed PostgreSQL's bin folder; a clear error if there is none."""
    override = os.environ.get("STEPSTREAM_PG_BIN")
    candidates = [override] if override else []
    candidates += sorted(glob.glob(BIN_GLOB), key=lambda p: int(pathlib.Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if (pathlib.Path(candidate) / "initdb").exists():
            return pathlib.Path(candidate)
    on_path = shutil.which("initdb")
    if on_path:
        return pathlib.Path(on_path).parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under "
        f"{BIN_GLOB} nor on PATH: install them (`apt-get install postgresql`, as `make system-deps` does) "
        "or point STEPSTREAM_PG_BIN at their folder"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, bin_dir: pathlib.Path | None = None, durable: bool = False) -> None:
        """durable: keep PostgreSQL's own defaults (fsync, synchronous commit) instead of test speed."""
        self.bin_dir = bin_dir or find_bin_dir()
        self.durable = durable
        self.as_root = os.geteuid() == 0
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="stepstream-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = 0
        self._options = ""
        self.user = RUN_AS if self.as_root else (os.environ.get("USER") or "postgres")

    @property
    def url(self) -> str:
        """Admin URL (database `postgres`) for the asyncpg driver."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.base, RUN_AS, RUN_AS)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        for attempt in range(5):
            self.port = _free_port()
            options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=300"
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
                self._options = options
                return
            except RuntimeError:
                if attempt == 4:
                    raise

    def restart(self) -> None:
        """Stop (fast: open transactions are rolled back, connections cut) and start again,
        on the same port."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options,
            "-m",
            "fast",
            "-w",
            "restart",
        )

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def new_database(self) -> str:
        """A new empty database on this server; its asyncpg URL."""
        return create_database(self.url)


def create_database(admin_url: str) -> str:
    """A new empty database on the server of `admin_url` (blocking: not inside an event loop)."""
    name = f"stepstream_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            await admin.dispose()

    asyncio.run(create())
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
