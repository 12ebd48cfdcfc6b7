"""Real engines for scale-out tests: PostgreSQL, Redis and an S3 stand-in (moto), each on
127.0.0.1 with a free port and its own temporary data directory, stopped by the caller."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.ports import free_port


def _wait(
    check: Callable[[], bool], what: str, timeout: float, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout} s")


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


@dataclass
class Engine:
    name: str
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    data_dir: str
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # Each engine runs in its own session: signal the group (runuser and its child).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(
                    self.proc.pid, signal.SIGINT if self.name == "postgres" else signal.SIGTERM
                )
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else None


def redis_bin() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def start_postgres(timeout: float = 60.0) -> Engine:
    """initdb + postgres in a temp dir; as the `postgres` (or `nobody`) user when we are root."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    data = tempfile.mkdtemp(prefix="s3t-pg-")
    os.chmod(data, 0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            user, pw = "nobody", pwd.getpwnam("nobody")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    pgdata = os.path.join(data, "db")
    subprocess.run(
        [
            *prefix,
            f"{bindir}/initdb",
            "-D",
            pgdata,
            "-A",
            "trust",
            "-U",
            "s3t",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *prefix,
            f"{bindir}/postgres",
            "-D",
            pgdata,
            "-p",
            str(port),
            "-k",
            data,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(data, "log"), "ab"),  # noqa: SIM115
        start_new_session=True,
    )
    url = f"postgresql+psycopg://s3t@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=s3t dbname=postgres"):
            return True

    _wait(ready, "postgres", timeout, proc)
    return Engine("postgres", url, port, proc, data)


def create_database(engine: Engine, name: str) -> str:
    """A fresh database on the server; returns its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(
        f"host=127.0.0.1 port={engine.port} user=s3t dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://s3t@127.0.0.1:{engine.port}/{name}"


def start_redis(timeout: float = 30.0, port: int | None = None) -> Engine:
    """port: a given one (to start Redis again where it was), else a free one."""
    binary = redis_bin()
    if binary is None:
        raise RuntimeError("redis-server not found (apt-get install redis-server)")
    data = tempfile.mkdtemp(prefix="s3t-redis-")
    port = port or free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            data,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait(lambda: _port_open(port), "redis", timeout, proc)
    return Engine("redis", f"redis://127.0.0.1:{port}/0", port, proc, data)


def start_moto(timeout: float = 60.0) -> Engine:
    binary = shutil.which("moto_server")
    if binary is None:
        raise RuntimeError("moto_server not found (pip install 'moto[server]')")
    data = tempfile.mkdtemp(prefix="s3t-moto-")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(data, "log"), "ab"),  # noqa: SIM115
        start_new_session=True,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto"},
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1) as r:
            return bool(r.status == 200)

    _wait(ready, "moto_server", timeout, proc)
    return Engine("moto", url, port, proc, data)
