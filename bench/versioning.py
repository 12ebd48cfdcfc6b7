"""The cost of versioning: small-object PUT and GET in a versioned bucket against an
unversioned one, and one ListObjectVersions page of a key with many versions."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import servers
from bench.harness import (
    Context,
    Row,
    Target,
    Unavailable,
    alternate,
    compare,
    ensure_apt,
    ensure_pip,
)
from bench.s3_small import CONNECTIONS, OBJECT_SIZE, Plan, asyncio_load, prepare, wrk_load
from bench.s3_small import WRK_SCRIPT as CYCLE_SCRIPT
from bench.servers import S3Endpoint

TITLE = "Versioning overhead"
DESCRIPTION = (
    "4 KiB PUTs and GETs per second in a bucket with versioning enabled against an "
    "unversioned bucket on the same s3torrent server, measured alternately, each first in "
    "every other round (same "
    f"presigned-URL load as `s3_small`, {CONNECTIONS} keep-alive connections). A versioned "
    "PUT moves the previous version into the version table in the same transaction; a GET "
    "reads the current version's row as in an unversioned bucket. The ratio is versioned / "
    "unversioned; target ≥ 0.9. The last row is the time of one ListObjectVersions page "
    "(max-keys 1000, starting mid-history at a version-id marker) of one key with 10,000 "
    "versions (2,000 with --quick), raw HTTP from a presigned URL; target < 100 ms."
)

VERSIONED = "bench-versioned"
PLAIN = "bench-plain"
HISTORY_KEY = "history"


def _fill_history(ep: S3Endpoint, versions: int) -> str:
    """Write `versions` versions of one key; returns a presigned URL of a page that starts
    at a version-id marker in the middle of its history."""
    client = ep.client()
    with ThreadPoolExecutor(8) as pool:
        ids = list(
            pool.map(
                lambda i: client.put_object(Bucket=VERSIONED, Key=HISTORY_KEY, Body=b"%d" % i)[
                    "VersionId"
                ],
                range(versions),
            )
        )
    page = client.list_object_versions(Bucket=VERSIONED, Prefix=HISTORY_KEY, MaxKeys=versions // 2)
    marker = page["NextVersionIdMarker"]
    assert marker in ids
    return str(
        client.generate_presigned_url(
            "list_object_versions",
            Params={
                "Bucket": VERSIONED,
                "Prefix": HISTORY_KEY,
                "KeyMarker": HISTORY_KEY,
                "VersionIdMarker": marker,
                "MaxKeys": 1000,
            },
            ExpiresIn=3600,
        )
    )


def _page_ms(url: str, tries: int) -> float:
    """Median milliseconds of one page, body read (the server's time plus loopback)."""
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read()
        times.append((time.perf_counter() - start) * 1000)
        if body.count(b"<Version>") != 1000:
            raise RuntimeError("the page did not hold 1000 versions")
    return statistics.median(times)


def run(ctx: Context) -> list[Row]:
    ensure_pip("boto3", module="boto3")
    seconds = ctx.size(6, 2)
    keys = ctx.size(1000, 200)
    history = ctx.size(10_000, 2_000)
    have_wrk = ensure_apt("wrk", binary="wrk") is not None
    workdir = ctx.scratch("versioning")
    body = workdir / "body.bin"
    body.write_bytes(os.urandom(OBJECT_SIZE))
    script = workdir / "cycle.lua"
    script.write_text(CYCLE_SCRIPT)
    tool = "wrk" if have_wrk else "bench.loadgen"

    def measure(plan: Plan | Unavailable, op: str) -> float:
        if isinstance(plan, Unavailable):
            raise plan
        data = body if op == "PUT" else None
        if have_wrk:
            load = wrk_load(plan.port, op, plan.paths[op], data, seconds, script)
        else:
            load = asyncio_load(plan.port, op, plan.paths[op], data, seconds)
        if load.ok == 0 or load.non_2xx or load.errors:
            raise RuntimeError(f"{load.non_2xx} non-2xx, {load.errors} errors")
        return load.rate

    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        (ep,) = servers.enter_all(stack, lambda: servers.s3torrent(ctx))
        if isinstance(ep, Unavailable):
            raise ep
        ctx.log(f"  writing {keys} objects into each bucket")
        versioned = prepare(ep, workdir, keys, body, bucket=VERSIONED, versioned=True)
        plain = prepare(ep, workdir, keys, body, bucket=PLAIN)
        for op in ("PUT", "GET"):
            ctx.log(f"  {op} 4 KiB, versioned vs unversioned ({seconds} s per run)")
            s_ver, s_plain = alternate(
                ctx,
                [
                    ("versioned", lambda op=op: measure(versioned, op)),  # type: ignore[misc]
                    ("unversioned", lambda op=op: measure(plain, op)),  # type: ignore[misc]
                ],
                balanced=True,
            )
            rows.append(
                compare(
                    f"{op} 4 KiB, versioned vs unversioned bucket",
                    "ops/s",
                    s_ver,
                    s_plain,
                    Target(0.9),
                    f"load by {tool}",
                )
            )
        ctx.log(f"  writing {history} versions of one key")
        url = _fill_history(ep, history)
        (page,) = alternate(ctx, [("ListObjectVersions page", lambda: _page_ms(url, 5))])
        rows.append(
            compare(
                f"ListObjectVersions, 1000 of {history:,} versions of one key",
                "ms",
                page,
                note="median of 5 pages per run; target < 100 ms",
            )
        )
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    with tempfile.TemporaryDirectory(prefix="bench-versioning-") as tmp:
        context = Context(
            quick=quick,
            runs=runs,
            workdir=Path(tmp),
            deadline=time.monotonic() + 900,
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
        for row in run(context):
            ours = f"{row.ours.median:,.1f}" if row.ours else row.ours_error
            anchor = f"{row.anchor.median:,.1f}" if row.anchor else row.anchor_error
            print(f"{row.metric}: {ours} vs {anchor} {row.unit}, ratio {row.ratio}, met {row.met}")
