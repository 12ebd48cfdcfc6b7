"""Small-object operations per second at 16 concurrent connections."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench import servers
from bench.harness import (
    Context,
    Row,
    Samples,
    Subject,
    Unavailable,
    alternate,
    compare,
    compile_c,
    ensure_apt,
    ensure_pip,
    run_bounded,
)
from bench.servers import S3Endpoint, with_log

TITLE = "Small object operations per second"
DESCRIPTION = (
    "Request rate for 4 KiB objects: PUT, GET, HEAD and ListObjectsV2 (max-keys 100) at "
    "16 concurrent keep-alive connections for a fixed time, against s3torrent (one server "
    "process), moto and nginx. Every S3 request is a pre-generated presigned URL (boto3), one "
    "per key, so the client costs almost nothing and the server's routing, signature check, "
    "metadata lookup and response are what is measured. nginx (one worker, sendfile on, "
    "access log off) serves the same 4 KiB file under the same 1,000 paths, with the same "
    "load generator, so it is the ceiling for answering a small request on this machine. "
    "PUT, GET and LIST run under `wrk` with a Lua script cycling over the URLs; HEAD runs "
    "under `bench/http_load.c` (C, epoll, 2 threads, the same 16 connections; compiled at "
    "the run), because wrk waits for a body after a HEAD response; its HEAD target row "
    "compares with nginx's GET under that same generator (bench.loadgen, a Python "
    "generator, when no C compiler is there). "
    "Only 2xx responses count; anything else is reported as non-2xx. `PUT 4 KiB, If-Match` "
    "is the same PUT with the conditional header `If-Match: <the body's ETag>` (it always "
    "holds: every PUT writes the same bytes), side by side with the unconditional row: the "
    "cost of deciding a condition in the commit. `PUT 4 KiB, data on tmpfs` is the same PUT "
    "to a second s3torrent whose data directory is on tmpfs (/dev/shm), where fsync returns "
    "at once: against the durable PUT it shows what fsync costs a write (`storage.fsync` "
    "false would save it too, at the price of power-loss safety; it is on by default). "
    "Targets (issue #21) "
    "are against nginx and hold for s3torrent with all its workers (`serve --workers N`): "
    "GET and HEAD ≥ 0.15× nginx (HEAD against nginx's GET rate), durable PUT ≥ 0.05× nginx "
    "GET; they are judged in the `workers` benchmark, which runs all the workers. The rows "
    "here are one server process, a reference with no target of their own, as are the moto "
    "rows."
)

BUCKET = "bench-small"
OBJECT_SIZE = 4096
CONNECTIONS = 16
LIST_URLS = 20
EXPIRES = 6 * 3600

# Against nginx (issue #21): judged with all workers (bench/workers.py), so one process's
# rows here carry no target; the note says where the target is.
_TARGETS = {"PUT": "≥ 0.05× nginx GET", "GET": "≥ 0.15× nginx", "HEAD": "≥ 0.15× nginx GET"}
REFERENCE_NOTE = {
    op: f"one server process, a reference: the target ({target}) holds with all workers "
    "and is judged in the workers benchmark"
    for op, target in _TARGETS.items()
}
HEAD_NOTE = (
    "; nginx's HEAD rate here is bounded by bench.loadgen (one Python process), not by "
    "nginx: the target row is HEAD vs nginx GET under wrk"
)

WRK_SCRIPT = r"""
-- Cycle over pre-generated request paths; count 2xx and other responses.
local threads = {}
local next_id = 1
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  method = args[1]
  paths = {}
  for line in io.lines(args[2]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  body = nil
  if args[3] ~= nil and args[3] ~= "" then
    local f = assert(io.open(args[3], "rb"))
    body = f:read("*a")
    f:close()
  end
  hdrs = nil
  if args[4] ~= nil and args[4] ~= "" then
    local name, value = string.match(args[4], "^([^:]+):%s*(.*)$")
    hdrs = {}
    hdrs[name] = value
  end
  idx = ((id - 1) * math.floor(#paths / 2)) % #paths
  ok = 0
  bad = 0
  firstbad = 0
end
function request()
  idx = idx % #paths + 1
  return wrk.format(method, paths[idx], hdrs, body)
end
function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad = bad + 1
    if firstbad == 0 then firstbad = status end
  end
end
function done(summary, latency, requests)
  local o, b, fb = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
    if fb == 0 then fb = t:get("firstbad") end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT ok=%d bad=%d firstbad=%d duration_us=%d connect=%d read=%d write=%d timeout=%d\n",
    o, b, fb, summary.duration, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass(frozen=True, slots=True)
class Load:
    """One timed load run's outcome."""

    ok: int
    non_2xx: int
    errors: int
    seconds: float
    first_bad: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


@dataclass(slots=True)
class Plan:
    """Presigned request files for one server."""

    endpoint: S3Endpoint
    port: int
    paths: dict[str, Path] = field(default_factory=dict)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def prepare(
    ep: S3Endpoint,
    workdir: Path,
    keys: int,
    body: Path,
    bucket: str = BUCKET,
    versioned: bool = False,
) -> Plan:
    """Create the bucket (with versioning enabled, if asked), write every key once, and
    presign one URL per key per operation."""
    client = ep.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    if versioned:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    names = [f"obj/{i:06d}" for i in range(keys)]
    data = body.read_bytes()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=data), names))
    plan = Plan(ep, port=urlsplit(ep.url).port or 80)
    ops = {"PUT": "put_object", "GET": "get_object", "HEAD": "head_object"}
    for op, method in ops.items():
        urls = [
            client.generate_presigned_url(
                method, Params={"Bucket": bucket, "Key": k}, ExpiresIn=EXPIRES
            )
            for k in names
        ]
        plan.paths[op] = _write_paths(workdir / f"{ep.name}-{bucket}-{op}.txt", urls)
    step = max(1, keys // LIST_URLS)
    lists = [
        client.generate_presigned_url(
            "list_objects_v2",
            Params={"Bucket": bucket, "MaxKeys": 100, "StartAfter": names[i]},
            ExpiresIn=EXPIRES,
        )
        for i in range(0, keys, step)
    ]
    plan.paths["LIST"] = _write_paths(workdir / f"{ep.name}-{bucket}-LIST.txt", lists)
    return plan


def _write_paths(path: Path, urls: list[str]) -> Path:
    path.write_text("".join(_path_of(u) + "\n" for u in urls))
    return path


def wrk_load(
    port: int,
    method: str,
    paths: Path,
    body: Path | None,
    seconds: int,
    script: Path,
    header: str = "",
) -> Load:
    """One timed wrk run; `header` ("Name: value") is sent with every request."""
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}", "--",
           method, str(paths), str(body) if body else "", header]  # fmt: skip
    out = run_bounded(cmd, timeout=seconds + 60)
    m = re.search(
        r"BENCH_RESULT ok=(\d+) bad=(\d+) firstbad=(\d+) duration_us=(\d+) "
        r"connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+)",
        out.stdout,
    )
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk rc={out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}")
    ok, bad, firstbad, micros, *errs = (int(g) for g in m.groups())
    return Load(ok, bad, sum(errs), micros / 1e6, str(firstbad) if firstbad else "")


def build_http_load(workdir: Path) -> Path | None:
    """Compile bench/http_load.c (the GET/HEAD generator); None without a C compiler."""
    return compile_c(workdir, "http_load", "-lpthread")


_HTTP_LOAD_RESULT = re.compile(r"BENCH_RESULT ok=(\d+) bad=(\d+) errors=(\d+) duration_us=(\d+)")


def c_load(exe: Path, port: int, method: str, paths: Path, seconds: int) -> Load:
    """One timed bench/http_load run: GET or HEAD, as many connections and threads as wrk."""
    cmd = [str(exe), "127.0.0.1", str(port), method, str(paths), str(seconds),
           str(CONNECTIONS), "2"]  # fmt: skip
    out = run_bounded(cmd, timeout=seconds + 60)
    m = _HTTP_LOAD_RESULT.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"http_load rc={out.returncode}: {(out.stderr or out.stdout)[-300:]}")
    ok, bad, errors, micros = (int(g) for g in m.groups())
    return Load(ok, bad, errors, micros / 1e6, "non-2xx" if bad else "")


def asyncio_load(
    port: int,
    method: str,
    paths: Path,
    body: Path | None,
    seconds: int,
    connections: int = CONNECTIONS,
    header: str = "",
) -> Load:
    cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--method", method,
           "--paths", str(paths), "--connections", str(connections),
           "--duration", str(seconds)]  # fmt: skip
    if body:
        cmd += ["--body", str(body)]
    if header:
        cmd += ["--header", header]
    out = run_bounded(cmd, timeout=seconds + 60, cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen rc={out.returncode}: {out.stderr.strip()[-300:]}")
    r = json.loads(out.stdout)
    statuses: dict[str, int] = r["statuses"]
    return Load(
        int(r["ok"]),
        int(r["non_2xx"]),
        sum(r["errors"].values()),
        float(r["seconds"]),
        next(iter(statuses), ""),
    )


@dataclass(slots=True)
class Counts:
    """Non-2xx responses and socket errors summed over one subject's runs."""

    non_2xx: int = 0
    errors: int = 0
    first_bad: str = ""


def _subject(
    name: str,
    plan: Plan | Unavailable,
    op: str,
    body: Path,
    measure: Callable[[int, str, Path, Path | None, str], Load],
    counts: Counts,
) -> Subject:
    writes = op in ("PUT", "PUT-IF")
    # The body never changes, so its ETag is every key's current one: the condition holds.
    header = f'If-Match: "{hashlib.md5(body.read_bytes()).hexdigest()}"' if op == "PUT-IF" else ""

    def run_once() -> float:
        if isinstance(plan, Unavailable):
            raise plan
        method = "HEAD" if op == "HEAD" else "PUT" if writes else "GET"
        paths = plan.paths["PUT" if writes else op]
        load = measure(plan.port, method, paths, body if writes else None, header)
        counts.non_2xx += load.non_2xx
        counts.errors += load.errors
        counts.first_bad = counts.first_bad or load.first_bad
        if load.ok == 0:
            err = RuntimeError(
                f"no 2xx responses ({load.non_2xx} non-2xx, first status "
                f"{load.first_bad or '-'}; {load.errors} socket errors)"
            )
            raise with_log(err, plan.endpoint)
        return load.rate

    return name, run_once


def _describe(samples: Samples, counts: Counts) -> None:
    if counts.non_2xx or counts.errors:
        first = f", first status {counts.first_bad}" if counts.first_bad else ""
        samples.notes.append(
            f"{samples.name}: {counts.non_2xx} non-2xx{first}, {counts.errors} socket errors"
        )


def _prepared(
    ep: S3Endpoint | Unavailable, workdir: Path, keys: int, body: Path
) -> Plan | Unavailable:
    if isinstance(ep, Unavailable):
        return ep
    try:
        return prepare(ep, workdir, keys, body)
    except Exception as e:
        return Unavailable(f"{ep.name}: preparing objects failed: {with_log(e, ep)}")


def static_tree(workdir: Path, keys: int, body: Path) -> tuple[Path, Path]:
    """nginx's document root: the body under the same paths as the S3 keys (hard links),
    and the file of request paths cycled over; returns (root, paths file)."""
    root = workdir / "www"
    folder = root / BUCKET / "obj"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}" for i in range(keys)]
    for name in names:
        target = folder / name
        if not target.exists():
            os.link(body, target)
    paths = workdir / "nginx-paths.txt"
    paths.write_text("".join(f"/{BUCKET}/obj/{name}\n" for name in names))
    return root, paths


def _static_subject(
    url: str | Unavailable,
    op: str,
    paths: Path,
    measure: Callable[[int, str, Path, Path | None, str], Load],
    counts: Counts,
) -> Subject:
    """nginx answering GET (or HEAD) of the same 4 KiB file under the same load."""

    def run_once() -> float:
        if isinstance(url, Unavailable):
            raise url
        load = measure(urlsplit(url).port or 80, op, paths, None, "")
        counts.non_2xx += load.non_2xx
        counts.errors += load.errors
        counts.first_bad = counts.first_bad or load.first_bad
        if load.ok == 0:
            raise RuntimeError(f"nginx: no 2xx responses ({load.non_2xx} non-2xx)")
        return load.rate

    return "nginx", run_once


@contextlib.contextmanager
def _tmpfs_server(ctx: Context) -> Iterator[S3Endpoint]:
    """A second s3torrent whose data directory is on tmpfs, where fsync is free."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        raise Unavailable("no writable /dev/shm (tmpfs) here")
    data = Path(tempfile.mkdtemp(prefix="s3torrent-bench-", dir=shm))
    try:
        with servers.s3torrent(ctx, name="s3torrent-tmpfs", data_dir=data) as ep:
            yield ep
    finally:
        shutil.rmtree(data, ignore_errors=True)


LABELS = {"LIST": "LIST (ListObjectsV2, 100 keys)", "PUT-IF": "PUT 4 KiB, If-Match"}


def run(ctx: Context) -> list[Row]:
    ensure_pip("boto3", module="boto3")
    seconds = ctx.size(6, 2)
    keys = ctx.size(1000, 200)
    have_wrk = ensure_apt("wrk", binary="wrk") is not None
    workdir = ctx.scratch("s3_small")
    body = workdir / "body.bin"
    body.write_bytes(os.urandom(OBJECT_SIZE))
    script = workdir / "cycle.lua"
    script.write_text(WRK_SCRIPT)
    www, static_paths = static_tree(workdir, keys, body)

    def by_wrk(port: int, method: str, paths: Path, data: Path | None, header: str) -> Load:
        return wrk_load(port, method, paths, data, seconds, script, header)

    def by_asyncio(port: int, method: str, paths: Path, data: Path | None, header: str) -> Load:
        return asyncio_load(port, method, paths, data, seconds, header=header)

    http_load = build_http_load(workdir)

    def by_c(port: int, method: str, paths: Path, data: Path | None, header: str) -> Load:
        assert http_load is not None and data is None and not header
        return c_load(http_load, port, method, paths, seconds)

    rows: list[Row] = []
    nginx_get_same_tool: Samples | None = None
    nginx_get: Samples | None = None
    head_samples = put_samples = Samples("s3torrent", error="not measured")
    put_rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        ours, moto, tmpfs, web = servers.enter_all(
            stack,
            lambda: servers.s3torrent(ctx),
            lambda: servers.moto(ctx),
            lambda: _tmpfs_server(ctx),
            lambda: servers.nginx(ctx, www),
        )
        ctx.log(f"  writing {keys} objects and presigning URLs")
        with ThreadPoolExecutor(3) as pool:
            ours_job = pool.submit(_prepared, ours, workdir, keys, body)
            moto_job = pool.submit(_prepared, moto, workdir, keys, body)
            tmpfs_job = pool.submit(_prepared, tmpfs, workdir, keys, body)
        ours_plan, moto_plan = ours_job.result(), moto_job.result()
        tmpfs_plan = tmpfs_job.result()
        for op in ("PUT", "PUT-IF", "GET", "HEAD", "LIST"):
            use_wrk = have_wrk and op != "HEAD"
            tool = "wrk" if use_wrk else "bench.loadgen"
            measure = by_wrk if use_wrk else by_asyncio
            if op == "HEAD" and http_load is not None:
                tool, measure = "http_load", by_c
            ctx.log(f"  {op} ({tool}, {CONNECTIONS} connections, {seconds} s)")
            c_ours, c_moto, c_third = Counts(), Counts(), Counts()
            subjects = [
                _subject("s3torrent", ours_plan, op, body, measure, c_ours),
                _subject("moto", moto_plan, op, body, measure, c_moto),
            ]
            if op == "PUT":
                subjects.append(
                    _subject("s3torrent, tmpfs", tmpfs_plan, op, body, measure, c_third)
                )
            elif op in ("GET", "HEAD"):
                subjects.append(_static_subject(web, op, static_paths, measure, c_third))
            if op == "HEAD" and measure is by_c:
                # The HEAD target's anchor, nginx's GET, under the same generator.
                subjects.append(_static_subject(web, "GET", static_paths, by_c, Counts()))
            samples = alternate(ctx, subjects)
            for s, c in zip(samples, (c_ours, c_moto, c_third), strict=False):
                _describe(s, c)
            s_ours, s_moto = samples[0], samples[1]
            label = LABELS.get(op, f"{op} 4 KiB")
            note = f"load by {tool}"
            rows.append(compare(label, "ops/s", s_ours, s_moto, None, note=note))
            if op == "PUT":
                put_samples = s_ours
                rows.append(
                    compare(
                        "PUT 4 KiB, data on tmpfs (fsync free)",
                        "ops/s",
                        samples[2],
                        s_ours,
                        None,
                        note=f"{note}; the anchor is the durable PUT: the ratio is fsync's cost",
                    )
                )
            elif op == "GET":
                nginx_get = samples[2]
                rows.append(
                    compare(
                        "GET 4 KiB vs nginx",
                        "ops/s",
                        s_ours,
                        samples[2],
                        None,
                        note=f"{note}; {REFERENCE_NOTE['GET']}",
                    )
                )
            elif op == "HEAD":
                head_samples = s_ours
                if len(samples) > 3:
                    nginx_get_same_tool = samples[3]
                rows.append(
                    compare(
                        f"HEAD 4 KiB vs nginx HEAD (both by {tool})",
                        "ops/s",
                        s_ours,
                        samples[2],
                        None,
                        note=note if measure is by_c else f"{note}{HEAD_NOTE}",
                    )
                )
        if nginx_get_same_tool is not None:
            put_rows.append(
                compare(
                    "HEAD 4 KiB vs nginx GET",
                    "ops/s",
                    head_samples,
                    nginx_get_same_tool,
                    None,
                    note=f"both by http_load; {REFERENCE_NOTE['HEAD']}",
                )
            )
        elif nginx_get is not None:
            # Without a C compiler: wrk cannot send HEAD, so nginx's capacity is its GET
            # rate under wrk.
            put_rows.append(
                compare(
                    "HEAD 4 KiB vs nginx GET",
                    "ops/s",
                    head_samples,
                    nginx_get,
                    None,
                    note=f"HEAD by bench.loadgen, nginx GET by wrk; {REFERENCE_NOTE['HEAD']}",
                )
            )
        if nginx_get is not None:
            put_rows.append(
                compare(
                    "PUT 4 KiB (durable) vs nginx GET",
                    "ops/s",
                    put_samples,
                    nginx_get,
                    None,
                    note=f"load by wrk; {REFERENCE_NOTE['PUT']}",
                )
            )
    return rows + put_rows
