"""4 KiB GET, HEAD and PUT per second with one worker process and with one per core."""

from __future__ import annotations

import contextlib
import http.client
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import servers
from bench.harness import (
    Context,
    Row,
    Samples,
    Subject,
    Target,
    Unavailable,
    alternate,
    compare,
    core_count,
    ensure_apt,
    ensure_pip,
)
from bench.s3_small import (
    BUCKET,
    WRK_SCRIPT,
    Load,
    Plan,
    asyncio_load,
    build_http_load,
    c_load,
    prepare,
    wrk_load,
)
from bench.servers import S3Endpoint

TITLE = "Worker processes (serve --workers)"
DESCRIPTION = (
    "4 KiB objects: GET, HEAD and durable PUT (fsync on) per second at 16 concurrent "
    "keep-alive connections, as in s3_small (presigned URLs; GET and PUT under `wrk`, HEAD "
    "under `bench/http_load.c`, since wrk cannot send HEAD), against s3torrent with "
    "`--workers N` (N = the machine's cores) and with `--workers 1`, and nginx serving the "
    "same 4 KiB file with N worker processes as the anchor: its GET rate under `wrk` for the "
    "GET and PUT target rows, its GET rate under http_load for the HEAD target row (nginx's "
    "HEAD under http_load is kept for reference, without a target). Targets with all "
    "workers: GET and HEAD ≥ 0.15× nginx GET, PUT ≥ 0.05× nginx GET. The `workers N vs 1` "
    "rows give the scaling. `GET 4 KiB anonymous` is the same GET, unsigned, of public-read "
    "objects (what a publisher's readers send): no signature to check, the access decision "
    "from the ACL; it has no target, the presigned row is the one the target holds for. "
    "Each presigned URL is used many times in a run, as a published link is, so the server's "
    "memo of presigned requests that checked out answers all but the first use of each "
    "(see bench/README.md)."
)
PUBLIC_KEYS = 200
ANON = "GET anon"

OBJECT_SIZE = 4096
TARGETS = {"GET": Target(0.15), "HEAD": Target(0.15), "PUT": Target(0.05)}
Measure = Callable[[int, str, Path, Path | None], Load]


def wait_for_workers(ep: S3Endpoint, count: int, timeout: float = 60.0) -> None:
    """Until `count` distinct workers answered /_health (the owner starts first)."""
    port = int(ep.url.rsplit(":", 1)[1])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise Unavailable(f"{ep.name}: only workers {sorted(seen)} of {count} answer")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/_health")
            response = conn.getresponse()
            response.read()
            seen.add((response.getheader("x-s3torrent-worker") or "0/").partition("/")[0])
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()


def _ours(name: str, plan: Plan | Unavailable, op: str, body: Path, measure: Measure) -> Subject:
    method = "GET" if op == ANON else op

    def run_once() -> float:
        if isinstance(plan, Unavailable):
            raise plan
        load = measure(plan.port, method, plan.paths[op], body if op == "PUT" else None)
        if load.ok == 0:
            raise RuntimeError(f"{name}: no 2xx ({load.non_2xx} non-2xx, {load.errors} errors)")
        return load.rate

    return name, run_once


def _nginx(base: str | Unavailable, op: str, paths: Path, measure: Measure) -> Subject:
    def run_once() -> float:
        if isinstance(base, Unavailable):
            raise base
        port = int(base.rsplit(":", 1)[1])
        load = measure(port, "HEAD" if op == "HEAD" else "GET", paths, None)
        if load.ok == 0:
            raise RuntimeError(f"nginx: no 2xx ({load.non_2xx} non-2xx)")
        return load.rate

    return "nginx", run_once


def _parts(samples: Samples) -> tuple[list[float], str | None, list[str]]:
    return samples.values, samples.error, samples.notes


def _plan(
    ep: S3Endpoint | Unavailable, count: int, workdir: Path, keys: int, body: Path
) -> Plan | Unavailable:
    if isinstance(ep, Unavailable):
        return ep
    try:
        wait_for_workers(ep, count)
        plan = prepare(ep, workdir, keys, body)
        plan.paths[ANON] = _public_paths(ep, workdir, min(keys, PUBLIC_KEYS), body)
        return plan
    except Unavailable as e:
        return e
    except Exception as e:
        return Unavailable(f"{ep.name}: preparing objects failed: {type(e).__name__}: {e}")


def _public_paths(ep: S3Endpoint, workdir: Path, count: int, body: Path) -> Path:
    """`count` public-read objects beside the presigned ones, and their unsigned paths."""
    client = ep.client()
    data = body.read_bytes()
    names = [f"pub/{i:06d}" for i in range(count)]

    def put(key: str) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=data, ACL="public-read")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, names))
    path = workdir / f"{ep.name}-{BUCKET}-anonymous-GET.txt"
    path.write_text("".join(f"/{BUCKET}/{k}\n" for k in names))
    return path


def run(ctx: Context) -> list[Row]:
    ensure_pip("boto3", module="boto3")
    seconds = ctx.size(6, 2)
    keys = ctx.size(1000, 200)
    cores = core_count()
    have_wrk = ensure_apt("wrk", binary="wrk") is not None
    workdir = ctx.scratch("workers")
    body = workdir / "body.bin"
    body.write_bytes(os.urandom(OBJECT_SIZE))
    www = workdir / "www"
    www.mkdir()
    (www / "obj").write_bytes(body.read_bytes())
    nginx_paths = workdir / "nginx-paths.txt"
    nginx_paths.write_text("/obj\n")
    script = workdir / "cycle.lua"
    script.write_text(WRK_SCRIPT)

    def by_wrk(port: int, method: str, paths: Path, data: Path | None) -> Load:
        return wrk_load(port, method, paths, data, seconds, script)

    def by_asyncio(port: int, method: str, paths: Path, data: Path | None) -> Load:
        return asyncio_load(port, method, paths, data, seconds)

    http_load = build_http_load(workdir)

    def by_c(port: int, method: str, paths: Path, data: Path | None) -> Load:
        assert http_load is not None and data is None
        return c_load(http_load, port, method, paths, seconds)

    rows: list[Row] = []
    many, one = f"workers {cores}", "workers 1"
    with contextlib.ExitStack() as stack:
        ours_n, ours_1, web = servers.enter_all(
            stack,
            lambda: servers.s3torrent(ctx, name="s3torrent-n", workers=cores),
            lambda: servers.s3torrent(ctx, name="s3torrent-1", workers=1),
            lambda: servers.nginx(ctx, www, workers=cores),
        )
        ctx.log(f"  writing {keys} objects and presigning URLs on both servers")
        plan_n = _plan(ours_n, cores, workdir, keys, body)
        plan_1 = _plan(ours_1, 1, workdir, keys, body)
        nginx_get: Samples | None = None
        for op in ("GET", ANON, "HEAD", "PUT"):
            use_wrk = have_wrk and op != "HEAD"
            tool = "wrk" if use_wrk else "bench.loadgen"
            measure = by_wrk if use_wrk else by_asyncio
            if op == "HEAD" and http_load is not None:
                tool, measure = "http_load", by_c
            ctx.log(f"  {op} ({tool}, {seconds} s)")
            # GET: nginx's GET under the same tool, the anchor of every target row. HEAD: nginx's
            # HEAD under bench.loadgen too, for reference only. PUT and the anonymous GET: no
            # nginx run of their own (nginx's GET is their anchor).
            subjects = [
                _ours(many, plan_n, op, body, measure),
                _ours(one, plan_1, op, body, measure),
            ]
            if op in ("GET", "HEAD"):
                subjects.append(_nginx(web, op, nginx_paths, measure))
            if op == "HEAD" and measure is by_c:
                # The HEAD target's anchor: nginx's GET under the same generator.
                subjects.append(_nginx(web, "GET", nginx_paths, by_c))
            s_n, s_1, *s_web = alternate(ctx, subjects)
            if op == ANON:
                assert nginx_get is not None
                label = "GET 4 KiB anonymous (public-read)"
                note = f"unsigned; load by {tool}; {cores} cores"
                rows.append(compare(f"{label}, {many}", "ops/s", s_n, nginx_get, None, note=note))
                rows.append(compare(f"{label}, {many} vs 1", "ops/s", s_n, s_1, None))
                continue
            label = "PUT 4 KiB (fsync)" if op == "PUT" else f"{op} 4 KiB"
            note = f"load by {tool}; {cores} cores"
            if op == "GET":
                nginx_get = Samples("nginx GET", *_parts(s_web[0]))
            assert nginx_get is not None
            anchor = nginx_get
            if op == "HEAD":
                head = Samples("nginx HEAD", *_parts(s_web[0]))
                both = f"{label}, {many} vs nginx HEAD (both by {tool})"
                if measure is by_c:
                    rows.append(compare(both, "ops/s", s_n, head, None, note=note))
                    anchor = Samples("nginx GET", *_parts(s_web[1]))
                    note = f"HEAD and nginx GET by http_load; {cores} cores"
                else:
                    bounded = f"{note}; bounded by bench.loadgen (one Python process), not nginx"
                    rows.append(compare(both, "ops/s", s_n, head, None, note=bounded))
                    note = f"HEAD by bench.loadgen, nginx GET by wrk; {cores} cores"
            target = TARGETS[op]
            rows.append(compare(f"{label}, {many}", "ops/s", s_n, anchor, target, note=note))
            rows.append(compare(f"{label}, {many} vs 1", "ops/s", s_n, s_1, None, note=note))
    return rows
