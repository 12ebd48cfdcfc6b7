"""Small-object operations per second at 16 concurrent connections."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
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
    Target,
    Unavailable,
    alternate,
    compare,
    ensure_apt,
    ensure_pip,
    run_bounded,
)
from bench.servers import S3Endpoint, with_log

TITLE = "Small object operations per second"
DESCRIPTION = (
    "Request rate for 4 KiB objects: PUT, GET, HEAD and ListObjectsV2 (max-keys 100) at "
    "16 concurrent keep-alive connections for a fixed time, against s3torrent and moto. "
    "Every request is a pre-generated presigned URL (boto3), one per key, so the client "
    "costs almost nothing and the server's routing, signature check, metadata lookup and "
    "response are what is measured. PUT, GET and LIST run under `wrk` with a Lua script "
    "cycling over the URLs; HEAD runs under `bench.loadgen` (raw asyncio), because wrk "
    "waits for a body after a HEAD response. Only 2xx responses count; anything else is "
    "reported as non-2xx. `PUT 4 KiB, If-Match` is the same PUT with the conditional "
    "header `If-Match: <the body's ETag>` (it always holds: every PUT writes the same bytes), "
    "side by side with the unconditional row: the cost of deciding a condition in the "
    "commit. Targets: GET and HEAD ≥ 5× moto, PUT ≥ 3× moto."
)

BUCKET = "bench-small"
OBJECT_SIZE = 4096
CONNECTIONS = 16
LIST_URLS = 20
EXPIRES = 6 * 3600

TARGETS: dict[str, Target | None] = {
    "PUT": Target(3.0),
    "PUT-IF": None,
    "GET": Target(5.0),
    "HEAD": Target(5.0),
    "LIST": None,
}

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

    def by_wrk(port: int, method: str, paths: Path, data: Path | None, header: str) -> Load:
        return wrk_load(port, method, paths, data, seconds, script, header)

    def by_asyncio(port: int, method: str, paths: Path, data: Path | None, header: str) -> Load:
        return asyncio_load(port, method, paths, data, seconds, header=header)

    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        ours, moto = servers.enter_all(
            stack, lambda: servers.s3torrent(ctx), lambda: servers.moto(ctx)
        )
        ctx.log(f"  writing {keys} objects and presigning URLs")
        with ThreadPoolExecutor(2) as pool:
            ours_job = pool.submit(_prepared, ours, workdir, keys, body)
            moto_job = pool.submit(_prepared, moto, workdir, keys, body)
        ours_plan, moto_plan = ours_job.result(), moto_job.result()
        for op in ("PUT", "PUT-IF", "GET", "HEAD", "LIST"):
            use_wrk = have_wrk and op != "HEAD"
            tool = "wrk" if use_wrk else "bench.loadgen"
            measure = by_wrk if use_wrk else by_asyncio
            ctx.log(f"  {op} ({tool}, {CONNECTIONS} connections, {seconds} s)")
            c_ours, c_moto = Counts(), Counts()
            s_ours, s_moto = alternate(
                ctx,
                [
                    _subject("s3torrent", ours_plan, op, body, measure, c_ours),
                    _subject("moto", moto_plan, op, body, measure, c_moto),
                ],
            )
            _describe(s_ours, c_ours)
            _describe(s_moto, c_moto)
            label = {
                "LIST": "LIST (ListObjectsV2, 100 keys)",
                "PUT-IF": "PUT 4 KiB, If-Match",
            }.get(op, f"{op} 4 KiB")
            rows.append(
                compare(label, "ops/s", s_ours, s_moto, TARGETS[op], note=f"load by {tool}")
            )
    return rows
