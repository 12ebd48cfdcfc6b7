"""The README's quick start: `pip install .` (no extras) and `s3torrent serve` on the
embedded defaults. The test environment has every extra installed (Redis, PostgreSQL and S3
clients, the test tools), so a module of the default path that imports one of them passes
every other test and fails only for a user: until 2026-12-07 the workers' event hub
imported the Redis relay, and a fresh `pip install .` could not start a server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_client
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]

# What only an extra installs (pyproject.toml: postgres, redis, s3, scale, test, bench): the
# embedded defaults must start, write, read and publish without any of them.
EXTRAS_ONLY = (
    "redis", "psycopg", "psycopg2", "boto3", "botocore", "s3transfer", "awscli", "moto",
    "minio", "libtorrent", "requests", "hypothesis", "pytest", "playwright", "matplotlib",
    "importlinter",
)  # fmt: skip

_WITHOUT_EXTRAS = """
import runpy, sys
blocked = set(sys.argv[1].split(","))
class NoExtras:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (an extra)", name=name)
        return None
sys.meta_path.insert(0, NoExtras())
sys.argv = ["s3torrent", *sys.argv[2:]]
runpy.run_module("s3torrent.cli", run_name="__main__", alter_sys=True)
"""


def _wait_healthy(endpoint: str, proc: subprocess.Popen[bytes], log: Path, workers: int) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise AssertionError(f"the server exited ({proc.returncode}): {tail}")
        try:
            with urllib.request.urlopen(endpoint + "/_health", timeout=1) as r:
                seen.add(r.headers.get("x-s3torrent-worker", "0/").partition("/")[0])
                if len(seen) >= workers:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not become healthy: {log.read_text()[-3000:]}")


def _use(endpoint: str, access_key: str, secret_key: str) -> None:
    """Write, read back, and fetch the torrent of a public object."""
    s3 = make_client(endpoint, access_key, secret_key)
    s3.create_bucket(Bucket="quick")
    body = os.urandom(100_000)
    s3.put_object(Bucket="quick", Key="data.bin", Body=body, ACL="public-read")
    assert s3.get_object(Bucket="quick", Key="data.bin")["Body"].read() == body
    with urllib.request.urlopen(f"{endpoint}/quick/data.bin?torrent", timeout=10) as r:
        assert r.headers["Content-Type"] == "application/x-bittorrent"
        assert r.read().startswith(b"d")


@contextlib.contextmanager
def _running(
    command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The server `command` starts, its output in `log`; killed on the way out if it runs."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


@pytest.mark.parametrize("workers", [1, 2])
def test_the_embedded_defaults_need_no_extra(tmp_path: Path, workers: int) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "S3TORRENT_ROOT_ACCESS_KEY": "QUICKSTARTROOTKEY001",
        "S3TORRENT_ROOT_SECRET_KEY": "quick-start-root-secret-key-0000000000",
    }
    command = [sys.executable, "-c", _WITHOUT_EXTRAS, ",".join(EXTRAS_ONLY), "serve",
               "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}",
               "--peer-listen", f"127.0.0.1:{free_port()}", "--workers", str(workers)]  # fmt: skip
    with _running(command, env, log) as proc:
        _wait_healthy(endpoint, proc, log, workers)
        _use(endpoint, env["S3TORRENT_ROOT_ACCESS_KEY"], env["S3TORRENT_ROOT_SECRET_KEY"])
        assert _stop(proc) == 0, log.read_text()[-3000:]
    assert "ModuleNotFoundError" not in log.read_text()


def _quick_start_install() -> str:
    """The README's first command, up to the server's start."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert blocks, "the README has no sh block"
    first = blocks[0].strip()
    install, sep, start = first.rpartition(" && ")
    assert sep and start == ".venv/bin/s3torrent serve", first
    return install


@pytest.mark.slow
def test_the_readme_quick_start_installs_and_serves(tmp_path: Path) -> None:
    """The README's first command as a user runs it, in a copy of the project: a fresh
    virtual environment, `pip install .`, then `s3torrent serve` on the embedded defaults
    with root credentials it generates (listening on free ports, not the defaults, so that
    nothing else on this machine is in the way)."""
    project = tmp_path / "s3torrent"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3TORRENT_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        ["bash", "-c", _quick_start_install()],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = [str(project / ".venv/bin/s3torrent"), "serve", "--listen", f"127.0.0.1:{port}",
               "--peer-listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
    with _running(command, env, log, cwd=project) as proc:
        _wait_healthy(endpoint, proc, log, 1)
        creds = json.loads((project / "s3torrent-data" / "root-credentials.json").read_text())
        _use(endpoint, creds["access_key"], creds["secret_key"])
        assert _stop(proc) == 0, log.read_text()[-3000:]
