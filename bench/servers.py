"""Servers under test: s3torrent, moto (S3 anchor) and nginx (static file anchor)."""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from bench.harness import (
    Context,
    Unavailable,
    ensure_apt,
    ensure_pip,
    free_port,
    run_bounded,
    spawn,
    stop_process,
    tail,
    wait_ready,
)

S3Client = Any  # botocore builds the client class at run time
T = TypeVar("T")

REGION = "us-east-1"
START_ATTEMPTS = 3
READY_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class S3Endpoint:
    """A running S3-compatible server and the credentials to reach it."""

    name: str
    url: str
    access_key: str
    secret_key: str
    log_path: Path
    peer_port: int | None = None  # s3torrent's BitTorrent listener, when it has one

    def client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=10,
                read_timeout=300,
                max_pool_connections=32,
            ),
        )

    def aws_cli_env(self, workdir: Path) -> dict[str, str]:
        """Environment for the AWS CLI: these credentials only, path-style, no pager."""
        config = workdir / "aws-config"
        if not config.exists():
            config.write_text("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(workdir / "aws-credentials-none"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PAGER="",
        )
        return env


@contextlib.contextmanager
def _serve(
    name: str,
    command: Callable[[int], Sequence[str]],
    *,
    ready_path: str,
    ready: Callable[[int], bool],
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[int]:
    """Start `command(port)` on a free loopback port, retrying if the port was taken."""
    log_path = workdir / f"{name}.log"
    last: Unavailable | None = None
    for _ in range(START_ATTEMPTS):
        port = free_port()
        proc = spawn(command(port), log_path=log_path, env=env, cwd=workdir)
        try:
            wait_ready(
                proc,
                f"http://127.0.0.1:{port}{ready_path}",
                timeout=READY_TIMEOUT,
                ok=ready,
                log_path=log_path,
                name=name,
            )
        except Unavailable as e:
            stop_process(proc)
            last = e
            continue
        except BaseException:
            stop_process(proc)
            raise
        try:
            yield port
        finally:
            stop_process(proc)
        return
    assert last is not None
    raise last


@functools.cache
def s3torrent_command() -> tuple[str, ...]:
    """How to run the s3torrent CLI here, or Unavailable if it is not installed."""
    override = os.environ.get("BENCH_S3TORRENT_CMD")
    if override:
        return tuple(override.split())
    try:
        probe = run_bounded([sys.executable, "-c", "import s3torrent.cli"], timeout=60)
    except (TimeoutError, OSError) as e:
        raise Unavailable(f"s3torrent not available: {e}") from e
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        raise Unavailable(f"s3torrent not available ({last})")
    return (sys.executable, "-m", "s3torrent.cli")


@functools.cache
def _serve_flags(base: tuple[str, ...]) -> str:
    """`s3torrent serve --help`, to pass only the flags this build knows."""
    try:
        return run_bounded([*base, "serve", "--help"], timeout=60).stdout
    except (TimeoutError, OSError):
        return ""


@contextlib.contextmanager
def s3torrent(
    ctx: Context,
    env: Mapping[str, str] | None = None,
    *,
    name: str = "s3torrent",
    data_dir: Path | None = None,
    workers: int = 1,
) -> Iterator[S3Endpoint]:
    """A fresh s3torrent server, all listeners on 127.0.0.1, on its own data directory
    unless given one (several nodes may share one), with one worker process unless a
    benchmark asks for more (`serve --workers`).

    It inherits our environment, plus `env` (settings such as `S3TORRENT_METERING__ENABLED`).
    """
    base = s3torrent_command()
    workdir = ctx.scratch(name)
    access, secret = "benchroot", "benchroot-secret-key-0123456789"
    full_env = {
        **os.environ,
        **(env or {}),
        "S3TORRENT_ROOT_ACCESS_KEY": access,
        "S3TORRENT_ROOT_SECRET_KEY": secret,
    }
    data = data_dir or workdir / "data"
    # The peer listener defaults to 0.0.0.0:6881; keep it on loopback and out of the way.
    peer_port = free_port() if "--peer-listen" in _serve_flags(base) else None

    def command(port: int) -> list[str]:
        cmd = [*base, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"]
        if peer_port is not None:
            cmd += ["--peer-listen", f"127.0.0.1:{peer_port}"]
        if "--workers" in _serve_flags(base):
            cmd += ["--workers", str(workers)]
        return cmd

    with _serve(
        name,
        command,
        ready_path="/_health",
        ready=lambda s: s == 200,
        workdir=workdir,
        env=full_env,
    ) as port:
        yield S3Endpoint(
            name,
            f"http://127.0.0.1:{port}",
            access,
            secret,
            workdir / f"{name}.log",
            peer_port,
        )


@contextlib.contextmanager
def moto(ctx: Context) -> Iterator[S3Endpoint]:
    """A fresh moto server (in-memory S3)."""
    if not ensure_pip("moto[server]", module="moto.server"):
        raise Unavailable("moto not available (pip install 'moto[server]')")
    workdir = ctx.scratch("moto")
    exe = shutil.which("moto_server")
    base = [exe] if exe else [sys.executable, "-m", "moto.server"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def command(port: int) -> list[str]:
        return [*base, "-H", "127.0.0.1", "-p", str(port)]

    with _serve(
        "moto",
        command,
        ready_path="/moto-api/",
        ready=lambda s: s < 500,
        workdir=workdir,
        env=env,
    ) as port:
        yield S3Endpoint(
            "moto", f"http://127.0.0.1:{port}", "testing", "testing", workdir / "moto.log"
        )


NGINX_CONF = """\
{user}worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
  }}
}}
"""


@contextlib.contextmanager
def nginx(ctx: Context, root: Path, workers: int = 1) -> Iterator[str]:
    """nginx serving `root` with sendfile on, as the current user, with `workers` worker
    processes; yields its base URL."""
    exe = ensure_apt("nginx-light", binary="nginx")
    if exe is None:
        raise Unavailable("nginx not available (apt-get install nginx-light)")
    workdir = ctx.scratch("nginx")
    # Only a root master switches workers to another user; keep them as us so they
    # can read our private temp directory.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""

    def command(port: int) -> list[str]:
        conf = workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(user=user, dir=workdir, port=port, root=root, workers=workers)
        )
        return [exe, "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log"),
                "-g", "daemon off;"]  # fmt: skip

    with _serve("nginx", command, ready_path="/", ready=lambda s: s < 500, workdir=workdir) as port:
        yield f"http://127.0.0.1:{port}"


def with_log(error: BaseException, server: object, lines: int = 3) -> RuntimeError:
    """`error` as a RuntimeError that also quotes the end of the server's log, if it has one."""
    text = f"{type(error).__name__}: {error}" if not isinstance(error, RuntimeError) else str(error)
    if isinstance(server, S3Endpoint):
        last = tail(server.log_path, lines)
        if last:
            text += f" [{server.name} log: {last}]"
    return RuntimeError(text)


def enter_all(
    stack: contextlib.ExitStack[Any], *cms: Callable[[], contextlib.AbstractContextManager[Any]]
) -> list[Any]:
    """Start several servers at once (start-up dominates short runs); as `enter`, in order.

    They are also stopped at once when the stack unwinds (each stop waits for its process).
    """
    managers = [make() for make in cms]
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(cm.__enter__) for cm in managers]
    out: list[Any] = []
    entered: list[contextlib.AbstractContextManager[Any]] = []
    failure: BaseException | None = None
    # If this thread is interrupted above, the processes are still stopped by
    # harness.stop_all (signals and exit), since spawn registers every one.
    for cm, fut in zip(managers, futures, strict=True):
        try:
            value = fut.result()
        except Unavailable as e:
            out.append(e)
        except (OSError, subprocess.SubprocessError) as e:
            out.append(Unavailable(f"could not start: {type(e).__name__}: {e}"))
        except BaseException as e:
            failure = failure or e
        else:
            entered.append(cm)
            out.append(value)
    if entered:
        stack.push(functools.partial(_exit_all, entered))
    if failure is not None:
        raise failure
    return out


def _exit_all(
    managers: Sequence[contextlib.AbstractContextManager[Any]],
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool:
    """Leave several contexts at once, as an `ExitStack` callback; never suppresses `exc`."""
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(cm.__exit__, exc_type, exc, tb) for cm in reversed(managers)]
    for fut in futures:
        if (error := fut.exception()) is not None:
            raise error
    return False


def enter(
    stack: contextlib.ExitStack[Any], cm: Callable[[], contextlib.AbstractContextManager[T]]
) -> T | Unavailable:
    """Enter a server's context, or return the Unavailable error that prevented it."""
    try:
        return stack.enter_context(cm())
    except Unavailable as e:
        return e
    except (OSError, subprocess.SubprocessError) as e:
        return Unavailable(f"could not start: {type(e).__name__}: {e}")
