"""Tracker announces per second: s3torrent's HTTP tracker against opentracker."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote_from_bytes

from bench import servers
from bench.harness import (
    Context,
    Row,
    Samples,
    Target,
    Unavailable,
    alternate,
    compare,
    ensure_apt,
    free_port,
    run_bounded,
    spawn,
    stop_process,
    tail,
)

TITLE = "Tracker announces per second"
DESCRIPTION = (
    "HTTP announces per second (compact answers, numwant 50) from `wrk` (one thread, 32 "
    "keep-alive connections) cycling over pre-generated announce URLs, against s3torrent's "
    "tracker, on its own lean listener (`tracker.http_listen`, `/announce`) and on the main "
    "S3 listener (`/_tracker/announce`, behind the S3 edge's middlewares), and opentracker "
    "(Debian package, on 127.0.0.1, with the same info-hashes in its whitelist; it closes "
    "the connection after every answer, as it always does), runs alternating. The "
    "info-hashes are those of a few hundred public objects created first, so every "
    "announce is for a registered torrent. "
    "The URL mix imitates a swarm: several thousand peers (distinct peer ids and ports), each "
    "in one torrent, announcing `started` when they join, then mostly regular (empty event) "
    "announces, some `completed` (left becomes 0) and some `stopped` (and later rejoining). "
    "An answer counts only if it is a 200 without `failure reason`. s3torrent runs with its "
    "per-IP announce rate limit lifted (all load comes from one address; opentracker has no "
    "such limit) and without its origin seeder. Target: s3torrent ≥ 0.5× opentracker."
)

BUCKET = "bench-tracker"
CONNECTIONS = 32
NUMWANT = 50

WRK_SCRIPT = r"""
-- Cycle over pre-generated announce paths; a 200 without "failure reason" is a success.
-- Read errors are not counted: opentracker closes the connection after every answer.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  idx = 0
  ok = 0
  bad = 0
  firstbad = ""
end
function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx])
end
function response(status, headers, body)
  if status == 200 and not string.find(body, "failure reason", 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if firstbad == "" then firstbad = status .. " " .. string.sub(body, 1, 80) end
  end
end
function done(summary, latency, requests)
  local o, b, fb = 0, 0, ""
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
    if fb == "" then fb = t:get("firstbad") end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT ok=%d bad=%d duration_us=%d errors=%d firstbad=%s\n",
    o, b, summary.duration, e.connect + e.write + e.timeout,
    string.gsub(fb, "%s", "_")))
end
"""

_RESULT = re.compile(
    r"BENCH_RESULT ok=(\d+) bad=(\d+) duration_us=(\d+) errors=(\d+) firstbad=(\S*)"
)


def publish_objects(ep: servers.S3Endpoint, count: int) -> list[bytes]:
    """Create `count` small public objects and return their torrents' v1 info-hashes."""
    from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

    client = ep.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)

    def one(i: int) -> bytes:
        key = f"obj/{i:05d}"
        client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(1024), ACL="public-read")
        with urllib.request.urlopen(f"{ep.url}/{BUCKET}/{key}?torrent", timeout=30) as resp:
            meta = bdecode(resp.read())
        return hashlib.sha1(bencode(meta[b"info"])).digest()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def announce_queries(hashes: list[bytes], peers: int, count: int, seed: int = 7) -> list[str]:
    """A swarm's announce mix: started on join, mostly regular, some completed and stopped."""
    rng = random.Random(seed)
    active: dict[int, int] = {}  # peer -> bytes left
    qhash = [quote_from_bytes(h, safe="") for h in hashes]
    out: list[str] = []
    for _ in range(count):
        peer = rng.randrange(peers)
        left = active.get(peer)
        r = rng.random()
        if left is None:
            event, left = "started", rng.choice((0, 1024, 1024))
            active[peer] = left
        elif r < 0.06 and left > 0:
            event, left = "completed", 0
            active[peer] = 0
        elif r < 0.12:
            event = "stopped"
            del active[peer]
        else:
            event = ""
        pid = b"-BT0001-" + peer.to_bytes(12, "big")
        q = (
            f"info_hash={qhash[peer % len(hashes)]}&peer_id={quote_from_bytes(pid, safe='')}"
            f"&port={10000 + peer}&uploaded=0&downloaded=0&left={left}"
            f"&compact=1&numwant={NUMWANT}&key={peer:08x}"
        )
        out.append(q + (f"&event={event}" if event else ""))
    return out


@contextlib.contextmanager
def opentracker(ctx: Context, hashes: list[bytes]) -> Iterator[str]:
    """opentracker on 127.0.0.1 with `hashes` whitelisted; yields its base URL."""
    exe = ensure_apt("opentracker", binary="opentracker")
    if exe is None:
        raise Unavailable("opentracker not available (apt-get install opentracker)")
    root = ctx.scratch("opentracker")
    root.chmod(0o755)
    # Debian builds it with a whitelist; it chroots to -d, so the list lives inside.
    (root / "whitelist.txt").write_text("".join(h.hex() + "\n" for h in hashes))
    (root / "whitelist.txt").chmod(0o644)
    log = root.parent / f"{root.name}.log"
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = spawn(
        [exe, "-i", "127.0.0.1", "-p", str(port), "-P", str(port), "-d", str(root),
         *user, "-w", "/whitelist.txt" if os.geteuid() == 0 else str(root / "whitelist.txt")],
        log_path=log,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        probe = f"{url}/announce?" + announce_queries(hashes, 1, 1)[0]
        refusal = b""
        for _ in range(100):
            if proc.poll() is not None:
                raise Unavailable(f"opentracker exited: {tail(log)}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(probe, timeout=1) as resp:
                    body = resp.read()
                # Its whitelist loads in a thread after it starts listening: until then it
                # refuses every hash, so a refusal only counts once it persists.
                if b"failure reason" not in body:
                    break
                refusal = body
            time.sleep(0.1)
        else:
            if refusal:
                raise Unavailable(f"opentracker refuses our hashes: {refusal[:100]!r}")
            raise Unavailable(f"opentracker not ready: {tail(log)}")
        yield url
    finally:
        stop_process(proc)


def run_wrk(wrk: str, script: Path, paths: Path, base: str, seconds: int) -> float:
    res = run_bounded(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s",
         "-s", str(script), base, "--", str(paths)],
        timeout=seconds + 60,
    )  # fmt: skip
    m = _RESULT.search(res.stdout)
    if m is None:
        raise RuntimeError(f"wrk gave no result: {(res.stdout + res.stderr)[-400:]}")
    ok, bad, micros, errors, first_bad = m.groups()
    if int(bad) > int(ok) // 100 or int(errors) > int(ok) // 100:
        raise RuntimeError(f"{bad} failed answers, {errors} errors (first: {first_bad})")
    return int(ok) / (int(micros) / 1e6)


def run(ctx: Context) -> list[Row]:
    objects = ctx.size(full=300, quick=50)
    peers = ctx.size(full=5000, quick=2000)
    seconds = ctx.size(full=6, quick=1)
    wrk = ensure_apt("wrk", binary="wrk")
    workdir = ctx.scratch("tracker")
    script = workdir / "announce.lua"
    script.write_text(WRK_SCRIPT)
    tracker_port = free_port()
    env = {
        "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "1000000000",
        "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "1000000000",
        "S3TORRENT_SEEDER__ENABLED": "false",
        "S3TORRENT_TRACKER__HTTP_LISTEN": f"127.0.0.1:{tracker_port}",
    }
    with contextlib.ExitStack() as stack:
        ours = servers.enter(stack, lambda: servers.s3torrent(ctx, env=env))
        if isinstance(ours, Unavailable):
            return [compare("announces/s", "req/s", Samples("s3torrent", error=str(ours)))]
        ctx.log(f"  creating {objects} public objects")
        hashes = publish_objects(ours, objects)
        queries = announce_queries(hashes, peers, 20 * peers)
        our_paths = workdir / "ours.txt"
        our_paths.write_text("".join(f"/_tracker/announce?{q}\n" for q in queries))
        ot_paths = workdir / "opentracker.txt"
        ot_paths.write_text("".join(f"/announce?{q}\n" for q in queries))
        anchor = servers.enter(stack, lambda: opentracker(ctx, hashes))

        def measure_ours() -> float:
            if wrk is None:
                raise Unavailable("wrk not available")
            return run_wrk(wrk, script, our_paths, ours.url, seconds)

        def measure_anchor() -> float:
            if isinstance(anchor, Unavailable):
                raise anchor
            if wrk is None:
                raise Unavailable("wrk not available")
            return run_wrk(wrk, script, ot_paths, anchor, seconds)

        def measure_lean() -> float:
            if wrk is None:
                raise Unavailable("wrk not available")
            return run_wrk(wrk, script, ot_paths, f"http://127.0.0.1:{tracker_port}", seconds)

        main, lean, anchor_samples = alternate(
            ctx,
            [
                ("s3torrent", measure_ours),
                ("s3torrent", measure_lean),
                ("opentracker", measure_anchor),
            ],
        )
    note = f"{objects} torrents, {peers} peers, {len(queries)} distinct announce URLs"
    return [
        compare(
            "HTTP announces/s, tracker port (`tracker.http_listen`)",
            "req/s",
            lean,
            anchor_samples,
            Target(0.5),
            note=note,
        ),
        compare(
            "HTTP announces/s, main listener (`/_tracker/announce`)",
            "req/s",
            main,
            anchor_samples,
            Target(0.5),
            note=note,
        ),
    ]
