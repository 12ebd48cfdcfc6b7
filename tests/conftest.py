"""Shared fixtures: a live s3torrent server on 127.0.0.1, and boto3 clients for it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from tests.ports import free_port

# Markers by folder: `pytest -m "not slow"` is the fast inner loop (unit and API tests);
# the README's command runs everything.
_FOLDER_MARKS = {
    "interop": ("interop", "slow"),
    "scale": ("scale", "slow"),
    "fault": ("slow",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for folder, marks in _FOLDER_MARKS.items():
            if f"{os.sep}tests{os.sep}{folder}{os.sep}" in str(item.path):
                for mark in marks:
                    item.add_marker(mark)


ROOT_AK = "S3TROOTTESTKEY000001"
ROOT_SK = "root-secret-key-for-tests-0000000000000"


@dataclass
class LiveServer:
    """A running `s3torrent serve` process."""

    data_dir: Path
    port: int
    peer_port: int
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    workers: int = field(default_factory=lambda: int(os.environ.get("S3TORRENT_TEST_WORKERS", 1)))
    """Server processes (`serve --workers`); one, the single-process server, unless a test
    asks for more (or S3TORRENT_TEST_WORKERS=N runs every server with N)."""
    output: int | None = None
    """A file descriptor for the server's standard output and error (else a log file)."""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ)
        env.update(
            S3TORRENT_ROOT_ACCESS_KEY=ROOT_AK,
            S3TORRENT_ROOT_SECRET_KEY=ROOT_SK,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "s3torrent.cli",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--peer-listen",
                f"127.0.0.1:{self.peer_port}",
                "--workers",
                str(self.workers),
                *self.extra_args,
            ],
            stdout=log if self.output is None else self.output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.endpoint + "/_health", timeout=1) as r:
                    if r.status == 200:
                        # Every worker answers (`serve --workers`: the owner starts first).
                        seen.add(r.headers.get("x-s3torrent-worker", "0/").partition("/")[0])
                        if len(seen) >= self.workers:
                            return
                        continue
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The whole session: workers of a supervisor that hung must not outlive it.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "s3torrent.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                **self.env,
                "S3TORRENT_ROOT_ACCESS_KEY": ROOT_AK,
                "S3TORRENT_ROOT_SECRET_KEY": ROOT_SK,
            },
        )


def metadata_env() -> dict[str, str]:
    """S3TORRENT_TEST_METADATA=postgres: each server gets a fresh PostgreSQL database
    (on a server started once per session) instead of SQLite."""
    if os.environ.get("S3TORRENT_TEST_METADATA") != "postgres":
        return {}
    from tests.scale import engines

    if not _postgres:
        import atexit

        _postgres.append(engines.start_postgres())
        atexit.register(_postgres[0].stop)
    _pg_databases[0] += 1
    name = f"api{os.getpid()}_{_pg_databases[0]}"
    return {"S3TORRENT_METADATA_URL": engines.create_database(_postgres[0], name)}


_postgres: list[Any] = []
_pg_databases = [0]


def start_server(
    tmp: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    workers: int | None = None,
    output: int | None = None,
) -> LiveServer:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    srv = LiveServer(
        data_dir=data,
        port=free_port(),
        peer_port=free_port(),
        extra_args=list(extra),
        env={**metadata_env(), **(env or {})},
        output=output,
    )
    if workers is not None:
        srv.workers = workers
    srv.start()
    return srv


def read_available(fd: int) -> bytes:
    """What a pipe holds now, without waiting (fd is left non-blocking)."""
    os.set_blocking(fd, False)
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out.extend(chunk)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


def rclone_env(endpoint: str, ak: str = ROOT_AK, sk: str = ROOT_SK) -> dict[str, str]:
    """The environment for rclone with a remote `s3t:` on this server (rclone's AWS SDK reads
    a CA bundle named in the environment even for plain http, so none is passed on)."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env |= {
        "RCLONE_CONFIG_S3T_TYPE": "s3",
        "RCLONE_CONFIG_S3T_PROVIDER": "Other",
        "RCLONE_CONFIG_S3T_ACCESS_KEY_ID": ak,
        "RCLONE_CONFIG_S3T_SECRET_ACCESS_KEY": sk,
        "RCLONE_CONFIG_S3T_ENDPOINT": endpoint,
        "RCLONE_CONFIG_S3T_REGION": "us-east-1",
    }
    return env


def make_client(endpoint: str, ak: str = ROOT_AK, sk: str = ROOT_SK, **cfg: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, **cfg),
    )


@pytest.fixture(scope="session")
def s3(server: LiveServer) -> Any:
    return make_client(server.endpoint)


_counter = [0]


@pytest.fixture
def bucket(s3: Any) -> str:
    _counter[0] += 1
    name = f"test-{os.getpid()}-{_counter[0]}-{int(time.time() * 1000) % 100000}"
    s3.create_bucket(Bucket=name)
    return name


# ---- added by the S3 API test suite ----


@dataclass(frozen=True)
class UserKeys:
    name: str
    access_key: str
    secret_key: str


def parse_user_add(output: str) -> dict[str, str]:
    """The key=value lines `s3torrent user add` prints."""
    fields = {}
    for line in output.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            fields[k.strip()] = v.strip()
    return fields


def add_user(srv: LiveServer, name: str) -> UserKeys:
    res = srv.cli("user", "add", name)
    assert res.returncode == 0, res.stderr
    f = parse_user_add(res.stdout)
    return UserKeys(name, f["access_key"], f["secret_key"])


@pytest.fixture(scope="session")
def bob(server: LiveServer) -> UserKeys:
    """A second, non-root user on the session server."""
    return add_user(server, f"bob{os.getpid()}")


@pytest.fixture(scope="session")
def bob_s3(server: LiveServer, bob: UserKeys) -> Any:
    return make_client(server.endpoint, bob.access_key, bob.secret_key)


@contextlib.contextmanager
def shifted_clock(delta: timedelta) -> Iterator[None]:
    """Make botocore sign as if its clock were off by delta (its own and its CRT signers)."""
    real = datetime.now

    def fake(remove_tzinfo: bool = True) -> datetime:
        now = real(UTC) + delta
        return now.replace(tzinfo=None) if remove_tzinfo else now

    with (
        mock.patch("botocore.auth.get_current_datetime", fake),
        mock.patch("botocore.crt.auth.get_current_datetime", fake),
    ):
        yield


def sign_request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    ak: str = ROOT_AK,
    sk: str = ROOT_SK,
    payload_hash: str | None = None,
) -> dict[str, str]:
    """SigV4 headers for a raw request (botocore's signer), to send with http.client.

    payload_hash, when given, is signed as the x-amz-content-sha256 value instead of the
    body's real SHA-256 (UNSIGNED-PAYLOAD, or a deliberately wrong digest).
    """
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class _Signer(S3SigV4Auth):
        def payload(self, request: Any) -> str:
            return payload_hash if payload_hash is not None else str(super().payload(request))

    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    _Signer(Credentials(ak, sk), "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


@pytest.fixture(scope="session")
def s3v4(server: LiveServer) -> Any:
    """A root client that presigns with SigV4 (boto3's default presigns with SigV2)."""
    return make_client(server.endpoint, signature_version="s3v4")


@contextlib.asynccontextmanager
async def node_in_process(
    data_dir: Path, *, seeder: bool = False
) -> AsyncIterator[tuple[Any, str]]:
    """A started s3torrent Node in this process and event loop (seeder off unless asked
    for), with the test root user: (the node, its endpoint). For tests that look inside
    the server."""
    from s3torrent.app import Node
    from s3torrent.config import Settings

    port = free_port()
    settings = Settings(
        data_dir=data_dir,
        listen=f"127.0.0.1:{port}",
        root_access_key=ROOT_AK,
        root_secret_key=ROOT_SK,
        peer_listen=f"127.0.0.1:{free_port()}",
        seeder={"enabled": seeder},
    )
    node = Node(settings)
    node.ensure_root()
    await node.start()
    try:
        yield node, f"http://127.0.0.1:{port}"
    finally:
        await node.stop()


def aws_cli(endpoint: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The AWS CLI against endpoint as the root user, with no config of the machine's."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ROOT_AK,
        "AWS_SECRET_ACCESS_KEY": ROOT_SK,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return subprocess.run(
        ["aws", "--endpoint-url", endpoint, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def s3cmd_command(endpoint: str, config_dir: Path) -> list[str]:
    """`s3cmd -c FILE` with a config (written in config_dir) for endpoint as the root user."""
    host = endpoint.removeprefix("http://")
    cfg = config_dir / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ROOT_AK}\nsecret_key = {ROOT_SK}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
    )
    return ["s3cmd", "-c", str(cfg)]
