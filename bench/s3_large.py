"""Large object throughput: one GET with curl, one PUT with the AWS CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import servers
from bench.harness import (
    Context,
    Row,
    Subject,
    Target,
    Unavailable,
    alternate,
    compare,
    ensure_apt,
    ensure_pip,
    run_bounded,
)
from bench.servers import S3Endpoint, with_log

TITLE = "Large object GET and PUT"
DESCRIPTION = (
    "Single-stream throughput of one large object. GET: `curl` downloads the object "
    "through a presigned URL from s3torrent and moto, and the same file from disk through "
    "nginx (sendfile on), the ceiling for serving bytes over loopback HTTP; the target is "
    "s3torrent ≥ 0.8× nginx. PUT: `aws s3 cp` uploads the file (the CLI's default multipart "
    "upload, 8 MiB parts, 10 threads, default checksums) to s3torrent and moto; the time "
    "includes the AWS CLI's start-up, which both sides pay. The object lives in the page "
    "cache on every side, so this measures the server, not the disk."
)

BUCKET = "bench-large"
KEY = "large.bin"
MB = 1_000_000
# Slowest rate we wait for before calling a run failed (keeps every run bounded).
FLOOR_BYTES_PER_S = 2 * MB


def make_file(path: Path, size: int) -> Path:
    """Incompressible test data, written once per size."""
    if path.exists() and path.stat().st_size == size:
        return path
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            f.write(chunk)
            written += len(chunk)
            # vary blocks so no two MiB are equal (dedup or caching tricks gain nothing)
            block = block[1:] + block[:1]
    return path


def _timeout(size: int) -> float:
    return 30 + size / FLOOR_BYTES_PER_S


def curl_get(url: str, size: int) -> float:
    """Download `url` once, discarding the bytes; MB/s as curl measured it."""
    fmt = "%{http_code} %{size_download} %{speed_download}"
    limit = _timeout(size)
    out = run_bounded(
        ["curl", "-s", "-o", "/dev/null", "--max-time", str(int(limit)), "-w", fmt, url],
        timeout=limit + 10,
    )
    code, got, speed = [*out.stdout.split(), "", "", ""][:3]
    if out.returncode != 0 or code != "200" or int(got or 0) != size:
        raise RuntimeError(
            f"curl rc={out.returncode} HTTP {code or '-'}, {got or 0} of {size} bytes"
        )
    return float(speed) / MB


def aws_put(ep: S3Endpoint, src: Path, key: str, workdir: Path) -> float:
    """Upload `src` with `aws s3 cp`; MB/s over the wall time of the command."""
    size = src.stat().st_size
    cmd = [aws_command(), "s3", "cp", str(src), f"s3://{BUCKET}/{key}", "--endpoint-url", ep.url,
           "--only-show-errors", "--no-progress"]  # fmt: skip
    out = run_bounded(cmd, timeout=_timeout(size) + 30, env=ep.aws_cli_env(workdir))
    if out.returncode != 0:
        raise RuntimeError(f"aws s3 cp rc={out.returncode}: {out.stderr.strip()[-300:]}")
    head = ep.client().head_object(Bucket=BUCKET, Key=key)
    if head["ContentLength"] != size:
        raise RuntimeError(f"uploaded object has {head['ContentLength']} bytes, expected {size}")
    return size / out.seconds / MB


def aws_command() -> str:
    """The AWS CLI on PATH, or the one pip put next to this Python."""
    beside = Path(sys.executable).with_name("aws")
    return shutil.which("aws") or (str(beside) if beside.exists() else "aws")


def seed(ep: S3Endpoint, src: Path) -> str:
    """Create the bucket and upload the object in one PUT; return a presigned GET URL."""
    client = ep.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    with open(src, "rb") as f:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=f)
    return str(
        client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=6 * 3600
        )
    )


def _seeded(ep: S3Endpoint | Unavailable, src: Path) -> str | Unavailable:
    if isinstance(ep, Unavailable):
        return ep
    try:
        return seed(ep, src)
    except Exception as e:
        err = with_log(e, ep)
        return Unavailable(f"{ep.name}: uploading the test object failed: {err}")


def _get(name: str, url: str | Unavailable, size: int, ep: object) -> Subject:
    def measure() -> float:
        if isinstance(url, Unavailable):
            raise url
        try:
            return curl_get(url, size)
        except Exception as e:
            raise with_log(e, ep) from e

    return name, measure


def _put(name: str, ep: S3Endpoint | Unavailable, src: Path, workdir: Path) -> Subject:
    def measure() -> float:
        if isinstance(ep, Unavailable):
            raise ep
        try:
            return aws_put(ep, src, "put-" + KEY, workdir)
        except Exception as e:
            raise with_log(e, ep) from e

    return name, measure


def run(ctx: Context) -> list[Row]:
    if ensure_apt("curl", binary="curl") is None:
        raise Unavailable("curl not available")
    ensure_pip("awscli", module="awscli")
    ensure_pip("boto3", module="boto3")
    size = ctx.size(1 << 30, 64 << 20)
    label = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
    www = ctx.workdir / "www"
    www.mkdir(exist_ok=True)
    ctx.log(f"  writing {label} test file")
    src = make_file(www / KEY, size)

    with contextlib.ExitStack() as stack:
        ours, moto, web = servers.enter_all(
            stack,
            lambda: servers.s3torrent(ctx),
            lambda: servers.moto(ctx),
            lambda: servers.nginx(ctx, www),
        )
        ctx.log("  uploading the test object")
        with ThreadPoolExecutor(2) as pool:  # set-up, not measured: both at once
            ours_job = pool.submit(_seeded, ours, src)
            moto_job = pool.submit(_seeded, moto, src)
        ours_url, moto_url = ours_job.result(), moto_job.result()
        nginx_url = web if isinstance(web, Unavailable) else f"{web}/{KEY}"

        ctx.log(f"  GET {label}")
        g_ours, g_nginx, g_moto = alternate(
            ctx,
            [
                _get("s3torrent", ours_url, size, ours),
                _get("nginx", nginx_url, size, web),
                _get("moto", moto_url, size, moto),
            ],
        )
        ctx.log(f"  PUT {label}")
        workdir = ctx.scratch("aws")
        p_ours, p_moto = alternate(
            ctx, [_put("s3torrent", ours, src, workdir), _put("moto", moto, src, workdir)]
        )

    return [
        compare(f"GET {label} (curl, presigned)", "MB/s", g_ours, g_nginx, Target(0.8)),
        compare(f"GET {label} (curl, presigned)", "MB/s", g_ours, g_moto),
        compare(f"PUT {label} (aws s3 cp)", "MB/s", p_ours, p_moto),
    ]
