"""A lifecycle pass over many objects: its speed, and what it costs a concurrent GET load."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request

from bench import servers
from bench.harness import (
    Context,
    Row,
    Samples,
    Target,
    Unavailable,
    compare,
    ensure_apt,
    ensure_pip,
)
from bench.s3_small import OBJECT_SIZE, Plan, asyncio_load, prepare, wrk_load
from bench.s3_small import WRK_SCRIPT as CYCLE_SCRIPT
from bench.servers import S3Endpoint

TITLE = "Lifecycle pass"
DESCRIPTION = (
    "One s3torrent server (SQLite) whose bucket holds N one-byte objects written directly "
    "through the metadata store before the server starts (full mode N = 1,000,000; quick "
    "5,000); 10% of them are ten days old, the rest new, and one rule expires objects "
    "older than 5 days. The rule is put with PutBucketLifecycleConfiguration and the worker "
    "(lifecycle.interval 1 s) walks the bucket in batches of 500, deleting the 10% through "
    "the normal conditional delete path. Pass speed is objects evaluated per second, from "
    "the configuration's PUT until the worker's scanned counter (/_metrics) reaches N. "
    "Meanwhile a 4 KiB GET load (presigned URLs over 16 keep-alive connections, as in "
    "`s3_small`, on another bucket of the same server) runs; its rate is compared with the "
    "same load measured before the rule was put and after it was removed (the median of the "
    "two). Target: GETs during the pass "
    "≥ 0.8× GETs without it."
)

LC_BUCKET = "bench-lifecycle"
OLD_DAYS = 10
RULE_DAYS = 5


async def _populate(url: str, total: int) -> None:
    from s3torrent.events import EventBus
    from s3torrent.store.metastore import open_metadata_store
    from s3torrent.store.rows import ObjectVersion

    meta = open_metadata_store(url, EventBus(), max_batch=1024)
    try:
        await meta.create_bucket(LC_BUCKET, "bench", "us-east-1", None)
        now = time.time()
        old = now - OLD_DAYS * 86400

        def version(i: int) -> ObjectVersion:
            made = old if i % 10 == 0 else now
            vid = f"{i:032x}"
            return ObjectVersion(LC_BUCKET, f"k/{i:08d}", vid, 1, '"e"', made, "bench", inline=b"x")

        step = 4096
        for start in range(0, total, step):
            await asyncio.gather(
                *(meta.commit_version(version(i)) for i in range(start, min(total, start + step)))
            )
    finally:
        meta.close()


def lifecycle_counters(ep: S3Endpoint) -> dict[str, float]:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{ep.url}/_metrics"
    signed = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials(ep.access_key, ep.secret_key), "s3", "us-east-1").add_auth(signed)
    req = urllib.request.Request(url, headers=dict(signed.headers.items()))
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("s3torrent_lifecycle_"):
            name, _, value = line.rpartition(" ")
            out[name.removeprefix("s3torrent_lifecycle_")] = float(value)
    return out


def _rule() -> dict[str, object]:
    return {
        "Rules": [
            {"ID": "old", "Filter": {"Prefix": ""}, "Status": "Enabled",
             "Expiration": {"Days": RULE_DAYS}}
        ]
    }  # fmt: skip


def run(ctx: Context) -> list[Row]:
    ensure_pip("boto3", module="boto3")
    total = ctx.size(1_000_000, 5_000)
    expiring = (total + 9) // 10
    seconds = ctx.size(10, 2)
    have_wrk = ensure_apt("wrk", binary="wrk") is not None
    workdir = ctx.scratch("lifecycle")
    data = workdir / "data"
    data.mkdir(mode=0o700)
    body = workdir / "body.bin"
    body.write_bytes(os.urandom(OBJECT_SIZE))
    script = workdir / "cycle.lua"
    script.write_text(CYCLE_SCRIPT)
    started = time.monotonic()
    asyncio.run(_populate(f"sqlite:///{data / 'metadata.sqlite3'}", total))
    ctx.log(f"  {total:,} objects written through the store in {time.monotonic() - started:.1f} s")

    def get_rate(plan: Plan) -> float:
        if have_wrk:
            load = wrk_load(plan.port, "GET", plan.paths["GET"], None, seconds, script)
        else:
            load = asyncio_load(plan.port, "GET", plan.paths["GET"], None, seconds)
        if load.ok == 0 or load.non_2xx or load.errors:
            raise RuntimeError(f"{load.non_2xx} non-2xx, {load.errors} errors")
        return load.rate

    pass_rate, during, without = Samples("lifecycle"), Samples("during pass"), Samples("no rule")
    env = {"S3TORRENT_LIFECYCLE__INTERVAL": "1", "S3TORRENT_LIFECYCLE__BATCH_SIZE": "500"}
    try:
        with servers.s3torrent(ctx, env=env, name="s3torrent-lifecycle", data_dir=data) as ep:
            plan = prepare(ep, workdir, ctx.size(1000, 100), body)
            without.values.append(get_rate(plan))
            ctx.log(f"    GET without a rule: {without.values[-1]:,.1f}/s")
            before = lifecycle_counters(ep)
            put_at = time.monotonic()
            ep.client().put_bucket_lifecycle_configuration(
                Bucket=LC_BUCKET, LifecycleConfiguration=_rule()
            )
            while (
                lifecycle_counters(ep)["objects_scanned_total"] == before["objects_scanned_total"]
            ):
                time.sleep(0.05)
            during.values.append(get_rate(plan))
            ctx.log(f"    GET during the pass: {during.values[-1]:,.1f}/s")
            mid = lifecycle_counters(ep)
            if mid["objects_scanned_total"] - before["objects_scanned_total"] >= total:
                during.notes.append(
                    "the first pass ended before the load did (later passes rescan)"
                )
            deadline = time.monotonic() + max(600.0, ctx.remaining())
            while True:
                now = lifecycle_counters(ep)
                if now["objects_scanned_total"] - before["objects_scanned_total"] >= total:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the pass did not finish in time")
                time.sleep(0.1)
            elapsed = time.monotonic() - put_at
            pass_rate.values.append(total / elapsed)
            expired = now["objects_expired_total"] - before["objects_expired_total"]
            ctx.log(f"    pass: {total:,} objects in {elapsed:.1f} s, {expired:,.0f} expired")
            if expired != expiring:
                pass_rate.notes.append(f"{expired:,.0f} expired, {expiring:,} expected")
            # The rule removed, once a pass has gone by: the load without a pass again, so a
            # drift of the machine during the pass shows in the two values.
            ep.client().delete_bucket_lifecycle(Bucket=LC_BUCKET)
            passes = lifecycle_counters(ep)["passes_total"]
            while lifecycle_counters(ep)["passes_total"] < passes + 2:
                time.sleep(0.1)
            without.values.append(get_rate(plan))
            ctx.log(f"    GET without a rule, after: {without.values[-1]:,.1f}/s")
    except Unavailable as e:
        pass_rate.error = during.error = without.error = str(e)
    tool = "wrk" if have_wrk else "bench.loadgen"
    return [
        compare(
            f"lifecycle pass, {total:,} objects, 10% expiring",
            "objects/s",
            pass_rate,
            note="one pass under the GET load, from the rule's PUT (≤ 1 s until a pass starts)",
        ),
        compare(
            "GET 4 KiB during a lifecycle pass vs without",
            "ops/s",
            during,
            without,
            Target(0.8),
            f"load by {tool}",
        ),
    ]
