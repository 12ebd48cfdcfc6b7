"""Encryption at rest: the cost of SSE-S3 on large GETs, PUTs and the seeder."""

from __future__ import annotations

import contextlib
import hashlib
import urllib.request
from pathlib import Path
from typing import Any

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
from bench.s3_large import BUCKET, MB, _timeout, aws_command, curl_get, make_file
from bench.seeder import (
    LeecherFiles,
    Published,
    lt,
    origin_bytes,
    run_leechers,
    s3torrent_seeder,
    strip_sources,
)
from bench.servers import S3Endpoint, with_log

TITLE = "Encryption at rest (SSE-S3)"
DESCRIPTION = (
    "The same s3torrent, the same bytes, stored plaintext and SSE-S3 (chunked AES-256-GCM, "
    "64 KiB chunks). GET: `curl` through a presigned URL (plaintext goes out with sendfile; "
    "encrypted chunks are read, authenticated and decrypted), target ≥ 0.6× plaintext. PUT: "
    "`aws s3 cp` with and without `--sse AES256`, target ≥ 0.8×. Seeder: one libtorrent "
    "leecher downloads a public object from the origin seeder alone, target ≥ 0.8×."
)

PLAIN, SEALED = "plain.bin", "sealed.bin"


def _seed(ep: S3Endpoint, src: Path, key: str, extra: dict[str, str]) -> str:
    client = ep.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    with open(src, "rb") as f:
        client.put_object(Bucket=BUCKET, Key=key, Body=f, **extra)
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=6 * 3600
    )
    return url


def _put(ep: S3Endpoint, src: Path, key: str, workdir: Path, sse: bool) -> float:
    size = src.stat().st_size
    cmd = [aws_command(), "s3", "cp", str(src), f"s3://{BUCKET}/{key}", "--endpoint-url", ep.url,
           "--only-show-errors", "--no-progress"]  # fmt: skip
    if sse:
        cmd += ["--sse", "AES256"]
    out = run_bounded(cmd, timeout=_timeout(size) + 30, env=ep.aws_cli_env(workdir))
    if out.returncode != 0:
        raise RuntimeError(f"aws s3 cp rc={out.returncode}: {out.stderr.strip()[-300:]}")
    head = ep.client().head_object(Bucket=BUCKET, Key=key)
    if head["ContentLength"] != size or (head.get("ServerSideEncryption") == "AES256") != sse:
        raise RuntimeError(f"uploaded object is not what was asked for: {head}")
    return size / out.seconds / MB


def _publish(endpoint: str, peer_port: int, path: Path, key: str, sse: bool) -> Published:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from fastbencode import bdecode, bencode

    from bench.seeder import ROOT_KEYS

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ROOT_KEYS[0],
        aws_secret_access_key=ROOT_KEYS[1],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    with contextlib.suppress(Exception):
        s3.create_bucket(Bucket=BUCKET)
    extra: dict[str, Any] = {"ACL": "public-read"}
    if sse:
        extra["ServerSideEncryption"] = "AES256"
    s3.upload_file(
        str(path), BUCKET, key, ExtraArgs=extra, Config=TransferConfig(multipart_threshold=8 << 30)
    )
    with urllib.request.urlopen(f"{endpoint}/{BUCKET}/{key}?torrent", timeout=120) as r:
        torrent = r.read()
    info_hash = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).hexdigest()
    return Published(
        strip_sources(torrent),
        info_hash,
        path.stat().st_size,
        peer_port,
        f"{endpoint}/_seeder/stats",
    )


def _label(size: int) -> str:
    return f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"


def _s3_rows(ctx: Context, size: int) -> list[Row]:
    src = make_file(ctx.scratch("sse-www") / PLAIN, size)
    with contextlib.ExitStack() as stack:
        (ep,) = servers.enter_all(stack, lambda: servers.s3torrent(ctx))
        if isinstance(ep, Unavailable):
            raise ep
        plain_url = _seed(ep, src, PLAIN, {})
        sealed_url = _seed(ep, src, SEALED, {"ServerSideEncryption": "AES256"})

        def get(name: str, url: str) -> Subject:
            def measure() -> float:
                try:
                    return curl_get(url, size)
                except Exception as e:
                    raise with_log(e, ep) from e

            return name, measure

        def put(name: str, sse: bool) -> Subject:
            workdir = ctx.scratch("sse-aws")

            def measure() -> float:
                try:
                    return _put(ep, src, f"put-{name}", workdir, sse)
                except Exception as e:
                    raise with_log(e, ep) from e

            return name, measure

        g_sealed, g_plain = alternate(ctx, [get("SSE-S3", sealed_url), get("plaintext", plain_url)])
        quick_runs = 1 if ctx.quick else None  # the AWS CLI's start-up alone is seconds
        p_sealed, p_plain = alternate(
            ctx, [put("SSE-S3", True), put("plaintext", False)], runs=quick_runs
        )
    label = _label(size)
    return [
        compare(f"GET {label} SSE-S3 vs plaintext (curl)", "MB/s", g_sealed, g_plain, Target(0.6)),
        compare(
            f"PUT {label} SSE-S3 vs plaintext (aws s3 cp)", "MB/s", p_sealed, p_plain, Target(0.8)
        ),
    ]


def _seeder_row(ctx: Context, size: int) -> Row:
    lt()  # Unavailable early if libtorrent cannot be had
    src = make_file(ctx.scratch("sse-seed") / "seeder.bin", size)
    timeout = 60 + size / (20 * MB)
    with (
        LeecherFiles(ctx.scratch("leechers")) as files,
        s3torrent_seeder(ctx) as (endpoint, peer_port),
    ):
        plain = _publish(endpoint, peer_port, src, "plain-seeder.bin", False)
        sealed = _publish(endpoint, peer_port, src, "sealed-seeder.bin", True)

        def leech(pub: Published, name: str) -> Subject:
            def measure() -> float:
                r = run_leechers(
                    pub.torrent, 1, peer_port, files, timeout=timeout,
                    origin_sent=lambda: origin_bytes(pub),
                )  # fmt: skip
                return size / r.times[0] / MB

            return name, measure

        s_sealed, s_plain = alternate(ctx, [leech(sealed, "SSE-S3"), leech(plain, "plaintext")])
    return compare(
        f"seeder, one leecher, {_label(size)}, SSE-S3 vs plaintext",
        "MB/s",
        s_sealed,
        s_plain,
        Target(0.8),
    )


def run(ctx: Context) -> list[Row]:
    if ensure_apt("curl", binary="curl") is None:
        raise Unavailable("curl not available")
    ensure_pip("awscli", module="awscli")
    ensure_pip("boto3", module="boto3")
    size = ctx.size(1 << 30, 64 << 20)
    # The seeder first: --quick's time box would otherwise end before it.
    seeder = _seeder_row(ctx, size)
    return [*_s3_rows(ctx, size), seeder]
