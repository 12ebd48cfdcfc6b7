"""Scale-out: one node vs two on shared PostgreSQL + Redis + one blob directory, and the
latency of a listing page deep into a large bucket on PostgreSQL vs SQLite.

Engines come from tests/scale/engines.py (Debian postgresql and redis-server on 127.0.0.1,
each in its own temporary directory). Two nodes share the PostgreSQL database, the Redis
instance and one local data directory (local blobs on a shared POSIX path); a client-side
round-robin splits the 16 connections between them. Listing nodes are two more single
nodes, one on PostgreSQL, one on SQLite, each with a bucket filled directly through
SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench import servers
from bench.harness import (
    Context,
    Row,
    Samples,
    Subject,
    Unavailable,
    alternate,
    compare,
    ensure_apt,
    ensure_pip,
    run_bounded,
)
from bench.s3_large import MB, curl_get, make_file
from bench.s3_small import WRK_SCRIPT, Counts, Load, asyncio_load
from bench.servers import S3Endpoint, with_log

TITLE = "Scale-out: two nodes on shared engines, deep listings"
DESCRIPTION = (
    "Two s3torrent nodes share one PostgreSQL database (metadata), one Redis (tracker "
    "registry and events) and one local data directory for blobs (local blobs on a shared "
    "POSIX path are a supported setup). The blobs are deliberately not in moto: moto is a "
    "Python S3 stand-in far slower than the nodes, so the figures would show moto's speed, "
    "not the engines' overhead. PostgreSQL and Redis are the Debian packages, started on "
    "127.0.0.1 with fsync off, as the scale-out tests do. 4 KiB PUT and GET: 16 keep-alive "
    "connections cycling over presigned SigV4 URLs (two `wrk -t1 -c8` processes, or "
    "`bench.loadgen` without wrk), all to one node, or round-robin over both (8 connections"
    " each, URLs presigned per node); 4 KiB objects are stored inline in their metadata "
    "row, so every such request goes through PostgreSQL. Large GET (256 MiB, quick 32 MiB):"
    " `curl` on presigned URLs of one object in the shared directory; two curls in "
    "parallel, one per node, against the same two curls on one node and against one curl on"
    " one node; MiB/s is the sum of the curls' own rates. In the table the s3torrent column"
    " is the two nodes (listing rows: PostgreSQL). The ratio two nodes / one node has no "
    "target: on a 2-core machine the nodes, the engines and the load generator share the "
    "same cores, so it shows what a second node costs or adds per request, not the speed-up"
    " of a second machine. Listing: a bucket of 1,000,000 keys (quick 20,000) inserted "
    "straight into the metadata (SQLAlchemy executemany in batches of 20,000, then VACUUM "
    "ANALYZE / ANALYZE), served by one node on PostgreSQL and one on SQLite; the latency of"
    " one raw ListObjectsV2 request (presigned, max-keys 1000, one keep-alive connection, "
    "median of several) for the first page and for the last page (start-after the 1,001st "
    "key from the end). Keyset paging should make both pages cost the same. If PostgreSQL "
    "or Redis cannot be installed or started, the rows that need them read unavailable."
)

SMALL_BUCKET = "bench-scale"
LIST_BUCKET = "bench-deep"
OBJECT_SIZE = 4096
CONNECTIONS = 16
PAGE = 1000
FILL_BATCH = 20_000
EXPIRES = 6 * 3600
MIB = 1 << 20

# ---------------------------------------------------------------------------
# Engines and nodes


def _engines() -> Any:
    """tests/scale/engines.py (the repository root is on sys.path under `python -m bench`)."""
    from tests.scale import engines

    return engines


def start_postgres(stack: contextlib.ExitStack[Any]) -> Any:
    """A PostgreSQL server stopped with the stack, or the Unavailable error that prevented it."""
    try:
        engines = _engines()
        if engines.postgres_bin() is None:
            # The server binaries live outside PATH (/usr/lib/postgresql/N/bin): asking for
            # "postgres" makes ensure_apt install the package exactly when they are missing.
            ensure_apt("postgresql", binary="postgres")
        if engines.postgres_bin() is None:
            return Unavailable(
                "PostgreSQL not available (no server binaries; apt-get install postgresql)"
            )
        if not ensure_pip("psycopg[binary]", module="psycopg"):
            return Unavailable("psycopg not available")
        pg = engines.start_postgres()
    except (ImportError, OSError, RuntimeError, subprocess.SubprocessError) as e:
        return Unavailable(f"PostgreSQL could not start: {type(e).__name__}: {e}")
    stack.callback(pg.stop)
    return pg


def start_redis(stack: contextlib.ExitStack[Any]) -> Any:
    """A Redis server stopped with the stack, or the Unavailable error that prevented it."""
    try:
        engines = _engines()
        if engines.redis_bin() is None:
            ensure_apt("redis-server", binary="redis-server")
        if engines.redis_bin() is None:
            return Unavailable(
                "Redis not available (no redis-server; apt-get install redis-server)"
            )
        redis = engines.start_redis()
    except (ImportError, OSError, RuntimeError, subprocess.SubprocessError) as e:
        return Unavailable(f"Redis could not start: {type(e).__name__}: {e}")
    stack.callback(redis.stop)
    return redis


def create_database(pg: Any, name: str) -> str | Unavailable:
    if isinstance(pg, Unavailable):
        return pg
    try:
        return str(_engines().create_database(pg, name))
    except Exception as e:
        return Unavailable(f"PostgreSQL: CREATE DATABASE {name} failed: {type(e).__name__}: {e}")


@contextlib.contextmanager
def node(
    ctx: Context, name: str, data_dir: Path, env: Mapping[str, str] | Unavailable
) -> Iterator[S3Endpoint]:
    """One s3torrent node on `data_dir` with extra environment, all listeners on 127.0.0.1."""
    if isinstance(env, Unavailable):
        raise env
    node_env = {"S3TORRENT_NODE_ID": name, **env}
    with servers.s3torrent(ctx, node_env, name=name, data_dir=data_dir) as ep:
        yield ep


def _port(ep: S3Endpoint) -> int:
    return urlsplit(ep.url).port or 80


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _write_paths(path: Path, urls: Sequence[str]) -> Path:
    path.write_text("".join(_path_of(u) + "\n" for u in urls))
    return path


# ---------------------------------------------------------------------------
# 4 KiB PUT and GET at 16 connections


@dataclass(frozen=True, slots=True)
class Stream:
    """One load generator process: its target port and request paths."""

    port: int
    paths: Path


@dataclass(slots=True)
class SmallPlan:
    """Per operation, the load streams of the one-node and of the two-node subject."""

    one: dict[str, list[Stream]]
    two: dict[str, list[Stream]]


def prepare_small(a: S3Endpoint, b: S3Endpoint, workdir: Path, keys: int, body: bytes) -> SmallPlan:
    """Write every key once through node a; presign one URL per key, node and operation.

    The second stream of each subject cycles from the middle of the key list, so the two
    load generators never write the same key at the same moment.
    """
    client_a, client_b = a.client(), b.client()
    with contextlib.suppress(client_a.exceptions.BucketAlreadyOwnedByYou):
        client_a.create_bucket(Bucket=SMALL_BUCKET)
    names = [f"obj/{i:06d}" for i in range(keys)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client_a.put_object(Bucket=SMALL_BUCKET, Key=k, Body=body), names))
    half = keys // 2
    rotated = names[half:] + names[:half]
    one: dict[str, list[Stream]] = {}
    two: dict[str, list[Stream]] = {}
    for op, method in (("PUT", "put_object"), ("GET", "get_object")):

        def presign(client: Any, ks: list[str], method: str = method) -> list[str]:
            return [
                client.generate_presigned_url(
                    method, Params={"Bucket": SMALL_BUCKET, "Key": k}, ExpiresIn=EXPIRES
                )
                for k in ks
            ]

        first = Stream(_port(a), _write_paths(workdir / f"a-{op}.txt", presign(client_a, names)))
        a_rot = _write_paths(workdir / f"a-{op}-rot.txt", presign(client_a, rotated))
        b_rot = _write_paths(workdir / f"b-{op}-rot.txt", presign(client_b, rotated))
        one[op] = [first, Stream(_port(a), a_rot)]
        two[op] = [first, Stream(_port(b), b_rot)]
    return SmallPlan(one, two)


_WRK_RESULT = re.compile(
    r"BENCH_RESULT ok=(\d+) bad=(\d+) firstbad=(\d+) duration_us=(\d+) "
    r"connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+)"
)


def wrk_load(
    s: Stream, method: str, body: Path | None, connections: int, seconds: int, script: Path
) -> Load:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{s.port}", "--",
           method, str(s.paths), str(body) if body else ""]  # fmt: skip
    out = run_bounded(cmd, timeout=seconds + 60)
    m = _WRK_RESULT.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk rc={out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}")
    ok, bad, firstbad, micros, *errs = (int(g) for g in m.groups())
    return Load(ok, bad, sum(errs), micros / 1e6, str(firstbad) if firstbad else "")


def loadgen_load(s: Stream, method: str, body: Path | None, connections: int, seconds: int) -> Load:
    return asyncio_load(s.port, method, s.paths, body, seconds, connections=connections)


LoadFn = Callable[[Stream, str, Path | None, int], Load]


def _small_subject(
    name: str,
    plan: SmallPlan | Unavailable,
    two_nodes: bool,
    op: str,
    body: Path,
    load: LoadFn,
    counts: Counts,
    logs: Sequence[object],
) -> Subject:
    def measure() -> float:
        if isinstance(plan, Unavailable):
            raise plan
        streams = (plan.two if two_nodes else plan.one)[op]
        conns = CONNECTIONS // len(streams)
        data = body if op == "PUT" else None
        with ThreadPoolExecutor(len(streams)) as pool:
            loads = list(pool.map(lambda s: load(s, op, data, conns), streams))
        for ld in loads:
            counts.non_2xx += ld.non_2xx
            counts.errors += ld.errors
            counts.first_bad = counts.first_bad or ld.first_bad
        if any(ld.ok == 0 for ld in loads):
            err = RuntimeError(
                f"a load generator got no 2xx responses ({sum(ld.non_2xx for ld in loads)} "
                f"non-2xx, first status {counts.first_bad or '-'})"
            )
            raise with_log(err, logs[-1] if two_nodes else logs[0])
        return sum(ld.rate for ld in loads)

    return name, measure


def _describe(samples: Samples, counts: Counts) -> None:
    if counts.non_2xx or counts.errors:
        first = f", first status {counts.first_bad}" if counts.first_bad else ""
        samples.notes.append(
            f"{samples.name}: {counts.non_2xx} non-2xx{first}, {counts.errors} socket errors"
        )


# ---------------------------------------------------------------------------
# Large GET


def seed_large(a: S3Endpoint, b: S3Endpoint, src: Path) -> tuple[str, str]:
    """Upload the object once through node a; presigned GET URLs for node a and node b."""
    client_a = a.client()
    with contextlib.suppress(client_a.exceptions.BucketAlreadyOwnedByYou):
        client_a.create_bucket(Bucket=SMALL_BUCKET)
    with open(src, "rb") as f:
        client_a.put_object(Bucket=SMALL_BUCKET, Key="large.bin", Body=f)
    params = {"Bucket": SMALL_BUCKET, "Key": "large.bin"}
    return (
        str(client_a.generate_presigned_url("get_object", Params=params, ExpiresIn=EXPIRES)),
        str(b.client().generate_presigned_url("get_object", Params=params, ExpiresIn=EXPIRES)),
    )


def parallel_curls(urls: Sequence[str], size: int) -> float:
    """Download every URL at once (one curl each); MiB/s summed over the curls."""
    with ThreadPoolExecutor(len(urls)) as pool:
        rates = list(pool.map(lambda u: curl_get(u, size), urls))
    return sum(rates) * MB / MIB


def _large_subject(
    name: str, urls: tuple[str, str] | Unavailable, pick: Sequence[int], size: int
) -> Subject:
    def measure() -> float:
        if isinstance(urls, Unavailable):
            raise urls
        return parallel_curls([urls[i] for i in pick], size)

    return name, measure


# ---------------------------------------------------------------------------
# Deep listing


@dataclass(slots=True)
class Listing:
    """A node whose bucket holds `keys` keys, and presigned first and last page paths."""

    endpoint: S3Endpoint
    first: str
    last: str
    fill_seconds: float


def _key(i: int) -> bytes:
    return f"k/{i:09d}".encode()


def fill(db_url: str, keys: int) -> float:
    """Insert `keys` object rows into LIST_BUCKET (executemany in batches); seconds taken."""
    from s3torrent.store import metadata as md

    engine = md.create_engine(db_url)
    try:
        with engine.connect() as conn:
            owner = conn.execute(
                sa.select(md.buckets.c.owner_id).where(md.buckets.c.name == LIST_BUCKET)
            ).scalar_one()
        start = time.perf_counter()
        for first in range(0, keys, FILL_BATCH):
            rows = [
                {
                    "bucket": LIST_BUCKET,
                    "key": _key(i),
                    "version_id": f"v{i:031d}",
                    "size": OBJECT_SIZE,
                    "etag": "0f343b0931126a20f133d67c2b018a3b",
                    "last_modified": 1.7e9 + i,
                    "owner_id": owner,
                    "headers": "{}",
                    "acl": None,
                    "checksum_algorithm": None,
                    "checksum_value": None,
                    "checksum_type": None,
                    "parts": None,
                    "inline_data": None,
                }
                for i in range(first, min(keys, first + FILL_BATCH))
            ]
            with engine.begin() as conn:
                conn.execute(md.objects.insert(), rows)
        # Planner statistics, as a table that has been there a while would have.
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE objects"))
        else:
            with engine.begin() as conn:
                conn.execute(sa.text("ANALYZE objects"))
        return time.perf_counter() - start
    finally:
        engine.dispose()


def prepare_listing(ep: S3Endpoint, db_url: str, keys: int) -> Listing:
    client = ep.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=LIST_BUCKET)
    seconds = fill(db_url, keys)

    def presign(**extra: Any) -> str:
        params = {"Bucket": LIST_BUCKET, "MaxKeys": PAGE, **extra}
        url = client.generate_presigned_url("list_objects_v2", Params=params, ExpiresIn=EXPIRES)
        return _path_of(str(url))

    after = _key(keys - PAGE - 1).decode()
    return Listing(ep, presign(), presign(StartAfter=after), seconds)


def time_page(ep: S3Endpoint, path: str, requests: int) -> float:
    """Median milliseconds of `requests` GETs of `path` on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", _port(ep), timeout=60)
    try:
        times: list[float] = []
        for i in range(requests + 1):  # the first one warms the connection and caches
            start = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - start
            if resp.status != 200:
                raise RuntimeError(f"ListObjectsV2 HTTP {resp.status}: {body[:200]!r}")
            if (n := body.count(b"<Key>")) != PAGE:
                raise RuntimeError(f"ListObjectsV2 returned {n} keys, expected {PAGE}")
            if i:
                times.append(elapsed)
        return statistics.median(times) * 1000
    finally:
        conn.close()


def _page_subject(name: str, listing: Listing | Unavailable, last: bool, requests: int) -> Subject:
    def measure() -> float:
        if isinstance(listing, Unavailable):
            raise listing
        try:
            return time_page(listing.endpoint, listing.last if last else listing.first, requests)
        except Exception as e:
            raise with_log(e, listing.endpoint) from e

    return name, measure


# ---------------------------------------------------------------------------


def _guard(what: str, fn: Callable[[], Any], *deps: object) -> Any:
    """fn(), or Unavailable: the first unavailable dependency, or fn's error with the log."""
    for d in deps:
        if isinstance(d, Unavailable):
            return d
    try:
        return fn()
    except Exception as e:
        server = next((d for d in deps if isinstance(d, S3Endpoint)), None)
        return Unavailable(f"{what} failed: {with_log(e, server)}")


def run(ctx: Context) -> list[Row]:
    ensure_pip("boto3", module="boto3")
    if ensure_apt("curl", binary="curl") is None:
        raise Unavailable("curl not available")
    have_wrk = ensure_apt("wrk", binary="wrk") is not None
    seconds = ctx.size(6, 2)
    small_keys = ctx.size(1000, 100)
    large = ctx.size(256 * MIB, 32 * MIB)
    list_keys = ctx.size(1_000_000, 20_000)
    page_requests = ctx.size(20, 3)
    workdir = ctx.scratch("scale")
    body = workdir / "body.bin"
    body.write_bytes(os.urandom(OBJECT_SIZE))
    script = workdir / "cycle.lua"
    script.write_text(WRK_SCRIPT)
    shared = workdir / "shared-data"  # both cluster nodes' data directory (blobs)
    shared.mkdir()
    sqlite_dir = workdir / "list-sqlite"
    sqlite_dir.mkdir()
    pg_list_dir = workdir / "list-pg"
    pg_list_dir.mkdir()

    with contextlib.ExitStack() as stack:
        ctx.log("  starting PostgreSQL and Redis")
        with ThreadPoolExecutor(2) as pool:
            pg_job = pool.submit(start_postgres, stack)
            redis_job = pool.submit(start_redis, stack)
        pg, redis = pg_job.result(), redis_job.result()
        cluster_db = create_database(pg, "cluster")
        list_db = create_database(pg, "listing")
        cluster_env: dict[str, str] | Unavailable
        if isinstance(cluster_db, Unavailable):
            cluster_env = cluster_db
        elif isinstance(redis, Unavailable):
            cluster_env = redis
        else:
            cluster_env = {
                "S3TORRENT_METADATA_URL": cluster_db,
                "S3TORRENT_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            }
        list_env = (
            list_db if isinstance(list_db, Unavailable) else {"S3TORRENT_METADATA_URL": list_db}
        )
        sqlite_url = f"sqlite:///{sqlite_dir / 'metadata.sqlite3'}"

        ctx.log("  starting nodes")
        a, b, list_pg, list_sqlite = servers.enter_all(
            stack,
            lambda: node(ctx, "node-a", shared, cluster_env),
            lambda: node(ctx, "node-b", shared, cluster_env),
            lambda: node(ctx, "list-pg", pg_list_dir, list_env),
            lambda: node(ctx, "list-sqlite", sqlite_dir, {}),
        )
        nodes = (a, b)

        def both() -> tuple[S3Endpoint, S3Endpoint]:  # called only when _guard saw both up
            assert isinstance(a, S3Endpoint) and isinstance(b, S3Endpoint)
            return a, b

        # 4 KiB PUT and GET
        ctx.log(f"  writing {small_keys} objects and presigning URLs")
        plan = _guard(
            "preparing 4 KiB objects",
            lambda: prepare_small(*both(), workdir, small_keys, body.read_bytes()),
            a,
            b,
        )
        tool = "wrk" if have_wrk else "bench.loadgen"

        def load(s: Stream, method: str, data: Path | None, conns: int) -> Load:
            if have_wrk:
                return wrk_load(s, method, data, conns, seconds, script)
            return loadgen_load(s, method, data, conns, seconds)

        rows: list[Row] = []
        for op in ("PUT", "GET"):
            ctx.log(f"  {op} 4 KiB ({tool}, {CONNECTIONS} connections, {seconds} s)")
            c_two, c_one = Counts(), Counts()
            s_two, s_one = alternate(
                ctx,
                [
                    _small_subject("two nodes", plan, True, op, body, load, c_two, nodes),
                    _small_subject("one node", plan, False, op, body, load, c_one, nodes),
                ],
            )
            _describe(s_two, c_two)
            _describe(s_one, c_one)
            rows.append(
                compare(
                    f"{op} 4 KiB, {CONNECTIONS} connections, two nodes",
                    "ops/s",
                    s_two,
                    s_one,
                    note=f"load by {tool}, 2×{CONNECTIONS // 2} connections",
                )
            )

        # Large GET
        label = f"{large >> 20} MiB"
        ctx.log(f"  writing and uploading the {label} object")
        src = make_file(workdir / "large.bin", large)
        urls = _guard(f"uploading the {label} object", lambda: seed_large(*both(), src), a, b)
        ctx.log(f"  GET {label} (curl)")
        g_two, g_one2, g_one1 = alternate(
            ctx,
            [
                _large_subject("two nodes", urls, (0, 1), large),
                _large_subject("one node, 2 curls", urls, (0, 0), large),
                _large_subject("one node, 1 curl", urls, (0,), large),
            ],
        )
        rows.append(compare(f"GET {label}, two nodes, 1 curl each", "MiB/s", g_two, g_one2))
        rows.append(compare(f"GET {label}, two nodes, 1 curl each", "MiB/s", g_two, g_one1))
        with contextlib.suppress(OSError):
            src.unlink()

        # Deep listing
        ctx.log(f"  filling {list_keys:,} keys on PostgreSQL and SQLite")
        # Both at once: the two engines are independent and this is set-up, not measured
        # (each fill times itself, so its figure includes the other's load).
        with ThreadPoolExecutor(2) as pool:
            pg_job = pool.submit(
                _guard,
                "filling the PostgreSQL bucket",
                lambda: prepare_listing(list_pg, str(list_db), list_keys),
                list_db,
                list_pg,
            )
            sqlite_job = pool.submit(
                _guard,
                "filling the SQLite bucket",
                lambda: prepare_listing(list_sqlite, sqlite_url, list_keys),
                list_sqlite,
            )
        l_pg, l_sqlite = pg_job.result(), sqlite_job.result()
        fills = [
            f"{name} filled in {x.fill_seconds:.1f} s"
            for name, x in (("PostgreSQL", l_pg), ("SQLite", l_sqlite))
            if isinstance(x, Listing)
        ]
        if len(fills) == 2:
            fills[-1] += " (both at once)"
        for last in (True, False):
            which = "last" if last else "first"
            ctx.log(f"  ListObjectsV2 {which} page of {list_keys:,} keys")
            p_pg, p_sqlite = alternate(
                ctx,
                [
                    _page_subject("PostgreSQL", l_pg, last, page_requests),
                    _page_subject("SQLite", l_sqlite, last, page_requests),
                ],
            )
            rows.append(
                compare(
                    f"ListObjectsV2 {which} page on PostgreSQL ({PAGE:,} of {list_keys:,} keys)",
                    "ms",
                    p_pg,
                    p_sqlite,
                    note=f"median of {page_requests} requests per run; " + ", ".join(fills),
                )
            )
    return rows
