"""The cost of metering and of the access log: small-object GETs per second with each on and
off."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
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

TITLE = "Metering overhead"
DESCRIPTION = (
    "4 KiB GETs per second from two s3torrent servers that differ only in "
    "`metering.enabled` (on: every request is counted per bucket, hour and operation in "
    "memory and flushed to the metadata database every second; off: no metering middleware). "
    f"Same presigned-URL load as `s3_small` ({CONNECTIONS} keep-alive connections), measured "
    "alternately, on then off, so drifts of a shared machine hit both alike. The ratio is "
    "metering on / metering off. Target: ≥ 0.97 (metering costs under 3%). "
    "The access log row compares a third server, metering and `logging.access_log` on (one "
    "line per request to a file, S3 format), with the metering-on server (access log off). "
    "Target: ≥ 0.95."
)


def _s3torrent(
    ctx: Context, metering: bool, access_log: Path | None = None
) -> contextlib.AbstractContextManager[S3Endpoint]:
    env = {
        "S3TORRENT_METERING__ENABLED": str(metering).lower(),
        "S3TORRENT_LOGGING__ACCESS_LOG": str(access_log is not None).lower(),
    }
    if access_log is not None:
        env["S3TORRENT_LOGGING__ACCESS_LOG_FILE"] = str(access_log)
    name = "s3torrent-logged" if access_log is not None else f"s3torrent-metering-{metering}"
    return servers.s3torrent(ctx, env=env, name=name)


def run(ctx: Context) -> list[Row]:
    ensure_pip("boto3", module="boto3")
    seconds = ctx.size(6, 1)
    keys = ctx.size(1000, 100)
    have_wrk = ensure_apt("wrk", binary="wrk") is not None
    workdir = ctx.scratch("metering")
    body = workdir / "body.bin"
    body.write_bytes(os.urandom(OBJECT_SIZE))
    script = workdir / "cycle.lua"
    script.write_text(CYCLE_SCRIPT)

    def measure(plan: Plan | Unavailable) -> float:
        if isinstance(plan, Unavailable):
            raise plan
        if have_wrk:
            load = wrk_load(plan.port, "GET", plan.paths["GET"], None, seconds, script)
        else:
            load = asyncio_load(plan.port, "GET", plan.paths["GET"], None, seconds)
        if load.ok == 0 or load.non_2xx or load.errors:
            raise RuntimeError(f"{load.non_2xx} non-2xx, {load.errors} errors")
        return load.rate

    def prepared(ep: S3Endpoint | Unavailable, name: str) -> Plan | Unavailable:
        if isinstance(ep, Unavailable):
            return ep
        d = workdir / name
        d.mkdir()
        try:
            return prepare(ep, d, keys, body)
        except Exception as e:
            return Unavailable(f"preparing objects failed: {e}")

    with contextlib.ExitStack() as stack:
        # Both servers start, and are filled, at once: set-up, not measured.
        on, off, logged = servers.enter_all(
            stack,
            lambda: _s3torrent(ctx, metering=True),
            lambda: _s3torrent(ctx, metering=False),
            lambda: _s3torrent(ctx, metering=True, access_log=workdir / "access.log"),
        )
        with ThreadPoolExecutor(3) as pool:
            on_job = pool.submit(prepared, on, "on")
            off_job = pool.submit(prepared, off, "off")
            logged_job = pool.submit(prepared, logged, "logged")
        plan_on, plan_off = on_job.result(), off_job.result()
        plan_logged = logged_job.result()
        ctx.log(f"  GET 4 KiB, metering on vs off, access log on ({seconds} s per run)")
        s_on, s_off, s_logged = alternate(
            ctx,
            [
                ("metering on", lambda: measure(plan_on)),
                ("metering off", lambda: measure(plan_off)),
                ("access log on", lambda: measure(plan_logged)),
            ],
            balanced=True,  # every other round in reverse: neither always runs first
        )
    tool = "wrk" if have_wrk else "bench.loadgen"
    return [
        compare(
            "GET 4 KiB, metering on vs off",
            "ops/s",
            s_on,
            s_off,
            Target(0.97),
            f"load by {tool}{_paired(s_on.values, s_off.values)}",
        ),
        compare(
            "GET 4 KiB, access log on vs off",
            "ops/s",
            s_logged,
            s_on,
            Target(0.95),
            f"load by {tool}; metering on in both{_paired(s_logged.values, s_on.values)}",
        ),
    ]


def _paired(ours: list[float], anchor: list[float]) -> str:
    """The median of each round's own ratio: a shared machine's slow minutes hit both runs
    of a round, so this drifts less than the ratio of the two medians."""
    ratios = sorted(a / b for a, b in zip(ours, anchor, strict=False) if b > 0)
    if not ratios:
        return ""
    return f"; median of per-round ratios {statistics.median(ratios):.3f}"


if __name__ == "__main__":
    # Until the harness lists this module: python -m bench.metering [--quick] [--runs N]
    quick = "--quick" in sys.argv
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    with tempfile.TemporaryDirectory(prefix="bench-metering-") as tmp:
        context = Context(
            quick=quick,
            runs=runs,
            workdir=Path(tmp),
            deadline=time.monotonic() + 900,
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
        for row in run(context):
            on = f"{row.ours.median:,.0f}" if row.ours else row.ours_error
            off = f"{row.anchor.median:,.0f}" if row.anchor else row.anchor_error
            print(f"{row.metric}: on {on} ops/s, off {off} ops/s, ratio {row.ratio}, met {row.met}")
            print(f"  {row.note}")
