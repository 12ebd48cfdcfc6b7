"""Torrent piece hashing: background hashing speed, its cost inside PutObject, ?torrent latency.

Three parts, all on one test file (1 GiB, quick 64 MiB) written once with os.urandom:

1. v1 piece hashing of the file by s3torrent's `hash_file` (2 threads, positional reads)
   against mktorrent, libtorrent's `set_piece_hashes` and one thread of hashlib SHA-1, each
   run in its own process, alternately; every subject's pieces are checked to agree.
2. One PutObject of the file to two s3torrent servers, torrent hashing on and off; then
   4 KiB PUTs per second to the same two (what a small object's torrent costs its write).
3. The first `GET /bucket/key?torrent` right after a PutObject, for several sizes, with a
   HEAD of the same object as a yardstick; the target (< 10 ms) is absolute.

The module also runs as `python -m bench.hashing --worker NAME FILE PIECE_LENGTH`: the
process that hashes the file for part 1 (so the GIL and threads of one subject never
share an interpreter with another's).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import resource
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import servers
from bench.harness import (
    REPO_DIR,
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
from bench.servers import S3Client, S3Endpoint, with_log

TITLE = "Torrent piece hashing"
LATENCY_TARGET_MS = 10.0
DESCRIPTION = (
    "Three measurements on one file of random bytes (1 GiB, quick 64 MiB), in the page "
    "cache. **Background hashing** (what a multipart object or a copy gets): v1 piece "
    "hashes of the file at the piece length s3torrent picks for that size "
    "(`piece_length_for`: 512 KiB for 1 GiB, 32 KiB for 64 MiB) by s3torrent's "
    "`hash_file` (2 worker threads, each reading 512 KiB at a time into a buffer it reuses), "
    "by `mktorrent -t 2`, by libtorrent's `set_piece_hashes` (v1 only, its default "
    "threads) and by hashlib SHA-1 on one thread, the one-core limit. Each runs in its own "
    "process, alternately; the Python subjects time the hashing inside the process (no "
    "interpreter start-up), mktorrent is timed over its whole run (a few ms of start-up). "
    "All subjects must produce the same pieces. Target: s3torrent ≥ 1.0× mktorrent. A "
    "second row gives bytes hashed per CPU-second (all threads, the hashing only; "
    "mktorrent's whole process), which load from other tenants of the machine hardly moves. "
    "**PutObject cost**: one `put_object` of the file (a single PUT, not multipart; boto3 "
    "with an unsigned payload and no extra checksum, so the client only streams the file) to "
    "two s3torrent servers that differ only in `torrent.enabled` (on: the pieces are "
    "hashed, read back from the blob while its fsync runs; off: no hashing), alternately, "
    "each first in every other "
    "round (each run ends in a 1 GiB fsync, whose writeback would otherwise always fall on "
    "the same one); the ratio is on / off. Each run's object is deleted after it, and the "
    "next run waits 1.5 s (untimed): on this machine a PUT written before the last one's "
    "page cache was released spent up to 3 s more in the kernel per GiB, on either server "
    "(bench/README.md). "
    "Target: ≥ 0.95 (hashing costs at most 5%). **Small PutObject cost**: 4 KiB PUTs per "
    "second to the same two servers, as in `s3_small` (presigned URLs of 1,000 private keys, "
    "quick 200, each written once first; `wrk` at 16 keep-alive connections, 6 s runs, quick "
    "2 s), alternately: the hashing of 4 KiB is tiny, but each PUT still gets its piece "
    "hashes, swarm ids and torrents row, and a publication decision, which the 1 GiB row "
    "does not show. Same target, ≥ 0.95. **First `?torrent`**: a public-read "
    "PutObject of a fresh key, then `GET /bucket/key?torrent` timed on a new connection "
    "(`Connection: close`, connect to last byte), for 4 KiB, 1 MiB, 64 MiB and (full run) "
    "1 GiB; the anchor is a HEAD of the same object on a new connection, a yardstick with no "
    f"ratio target. Target: < {LATENCY_TARGET_MS:g} ms (median, absolute; stated in the "
    "row's note since the table's targets are ratios)."
)

BUCKET = "bench-hashing"
MB = 1_000_000
CHUNK = 1 << 20
# Slowest rate we wait for before calling a run failed (keeps every run bounded).
FLOOR_BYTES_PER_S = 10 * MB
HASH_WORKERS = 2
SMALL_PUT_SIZE = 4096
# Seconds a 1 GiB PUT run waits after deleting its object (see _put_subject).
SETTLE_AFTER_DELETE = 1.5
ENABLED_VAR = "S3TORRENT_TORRENT__ENABLED"
# Workers exit with this code when their library cannot be imported.
EXIT_UNAVAILABLE = 3


def label_of(size: int) -> str:
    if size >= 1 << 30:
        return f"{size >> 30} GiB"
    if size >= 1 << 20:
        return f"{size >> 20} MiB"
    return f"{size >> 10} KiB"


def make_file(path: Path, size: int) -> Path:
    """Random (incompressible, never repeating) bytes, written in 1 MiB chunks."""
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(CHUNK, size - written)
            f.write(os.urandom(n))
            written += n
    return path


def piece_length(size: int) -> int:
    """s3torrent's piece length for `size`; its rule restated if s3torrent cannot be imported."""
    try:
        from s3torrent.torrent.pieces import piece_length_for
    except ImportError:
        length = 16384
        while length < 16 << 20 and -(-size // length) > 2048:
            length *= 2
        return length
    return piece_length_for(size)


def _timeout(size: int) -> float:
    return 30 + size / FLOOR_BYTES_PER_S


# ---------------------------------------------------------------------------
# Part 1: hashing workers (run in child processes)


class Clock:
    """Wall and CPU seconds (all threads of this process) of a `with` block."""

    wall = 0.0
    cpu = 0.0

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _hash_ours(path: Path, plen: int, clock: Clock) -> bytes:
    from s3torrent.torrent.hasher import hash_file
    from s3torrent.torrent.pieces import PieceLayout

    size = path.stat().st_size
    # The same path the server's background jobs take for a local blob.
    with ThreadPoolExecutor(HASH_WORKERS) as pool, clock:
        hashes = hash_file(path, PieceLayout(size, plen), v1=True, v2=False, executor=pool)
    assert hashes.pieces_v1 is not None
    return hashes.pieces_v1


def _hash_libtorrent(path: Path, plen: int, clock: Clock) -> bytes:
    import libtorrent as lt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(path))
        ct = lt.create_torrent(fs, plen, lt.create_torrent.v1_only)
        with clock:
            lt.set_piece_hashes(ct, str(path.parent))
        torrent: dict[bytes, Any] = ct.generate()
    return bytes(torrent[b"info"][b"pieces"])


def _hash_sha1(path: Path, plen: int, clock: Clock) -> bytes:
    pieces = bytearray()
    buf = bytearray(plen)
    view = memoryview(buf)
    with clock, open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            pieces += hashlib.sha1(view[:n]).digest()
    return bytes(pieces)


WORKERS: dict[str, Callable[[Path, int, Clock], bytes]] = {
    "ours": _hash_ours,
    "libtorrent": _hash_libtorrent,
    "sha1": _hash_sha1,
}


def worker_main(argv: list[str]) -> int:
    name, path, plen = argv[0], Path(argv[1]), int(argv[2])
    clock = Clock()
    try:
        pieces = WORKERS[name](path, plen, clock)
    except ImportError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    digest = hashlib.sha1(pieces).hexdigest()
    print(json.dumps({"seconds": clock.wall, "cpu": clock.cpu, "pieces": digest}))
    return 0


# ---------------------------------------------------------------------------
# Part 1: subjects (run in this process)


class PieceCheck:
    """Per subject: the SHA-1 of its `pieces` string (all must agree) and its CPU figures."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self.cpu_rates: dict[str, list[float]] = {}

    def record(self, name: str, digest: str, size: int, cpu_seconds: float) -> None:
        first = self.digests.setdefault(name, digest)
        if first != digest:
            raise RuntimeError(f"{name} produced different pieces in two runs")
        if cpu_seconds > 0:
            self.cpu_rates.setdefault(name, []).append(size / cpu_seconds / MB)

    def disagreements(self, reference: str) -> dict[str, str]:
        """Subjects whose pieces differ from `reference`'s (if it has any)."""
        ref = self.digests.get(reference)
        if ref is None:
            return {}
        return {n: d for n, d in self.digests.items() if d not in (ref, "unchecked")}

    def cpu_samples(self, of: Samples) -> Samples:
        """MB per CPU-second of a subject, sharing its error."""
        if of.error is not None:
            return Samples(of.name, error=of.error)
        return Samples(of.name, values=list(self.cpu_rates.get(of.name, [])))


def _python_worker(name: str, src: Path, plen: int, check: PieceCheck, what: str) -> Subject:
    size = src.stat().st_size

    def measure() -> float:
        cmd = [sys.executable, "-m", "bench.hashing", "--worker", name, str(src), str(plen)]
        out = run_bounded(cmd, timeout=_timeout(size) + 30, cwd=REPO_DIR)
        last = (out.stderr.strip().splitlines() or [""])[-1]
        if out.returncode == EXIT_UNAVAILABLE:
            raise Unavailable(f"{what} not available ({last})")
        if out.returncode != 0:
            raise RuntimeError(f"worker rc={out.returncode}: {last}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        check.record(what, result["pieces"], size, float(result["cpu"]))
        return size / float(result["seconds"]) / MB

    return what, measure


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _mktorrent(exe: str | None, src: Path, plen: int, check: PieceCheck, tmp: Path) -> Subject:
    size = src.stat().st_size
    out_path = tmp / "mktorrent.torrent"

    def measure() -> float:
        if exe is None:
            raise Unavailable("mktorrent not available (apt-get install mktorrent)")
        out_path.unlink(missing_ok=True)  # mktorrent refuses to overwrite
        cmd = [exe, "-t", str(HASH_WORKERS), "-l", str(plen.bit_length() - 1),
               "-o", str(out_path), str(src)]  # fmt: skip
        # Only this child ends while we wait, so the children's CPU delta is mktorrent's.
        cpu = _children_cpu()
        out = run_bounded(cmd, timeout=_timeout(size))
        cpu = _children_cpu() - cpu
        if out.returncode != 0:
            raise RuntimeError(f"mktorrent rc={out.returncode}: {out.stderr.strip()[-300:]}")
        pieces = _torrent_pieces(out_path.read_bytes())
        digest = hashlib.sha1(pieces).hexdigest() if pieces is not None else "unchecked"
        check.record("mktorrent", digest, size, cpu)
        return size / out.seconds / MB

    return "mktorrent", measure


def _torrent_pieces(data: bytes) -> bytes | None:
    """The v1 `pieces` of a .torrent, or None if no decoder is at hand."""
    try:
        from s3torrent.torrent.metainfo import parse_torrent
    except ImportError:
        return None
    return parse_torrent(data).pieces_v1


def _warm(src: Path) -> None:
    """Read the file once so every subject finds it in the page cache."""
    with open(src, "rb", buffering=0) as f:
        while f.read(8 * CHUNK):
            pass


def hashing_rows(ctx: Context, src: Path) -> list[Row]:
    size = src.stat().st_size
    label = label_of(size)
    plen = piece_length(size)
    mktorrent = ensure_apt("mktorrent", binary="mktorrent")
    have_lt = ensure_pip("libtorrent", module="libtorrent")
    check = PieceCheck()
    tmp = ctx.scratch("mktorrent")
    _warm(src)

    def libtorrent() -> Subject:
        if not have_lt:
            return "libtorrent", _raise(Unavailable("libtorrent not available (pip install)"))
        return _python_worker("libtorrent", src, plen, check, "libtorrent")

    ctx.log(f"  v1 piece hashing, {label}, {plen >> 10} KiB pieces")
    ours, mk, lt, sha1 = alternate(
        ctx,
        [
            _python_worker("ours", src, plen, check, "s3torrent"),
            _mktorrent(mktorrent, src, plen, check, tmp),
            libtorrent(),
            _python_worker("sha1", src, plen, check, "hashlib SHA-1, 1 thread"),
        ],
    )
    for s in (ours, mk, lt, sha1):
        bad = check.disagreements("hashlib SHA-1, 1 thread").get(s.name)
        if bad is not None:
            s.values.clear()
            s.error = "its pieces differ from hashlib's (wrong result, figure dropped)"
    if check.digests.get("mktorrent") == "unchecked":
        mk.notes.append("mktorrent's pieces not checked (no torrent decoder)")

    metric = f"v1 piece hashing, {label} ({plen >> 10} KiB pieces)"
    threads = f"s3torrent and mktorrent: {HASH_WORKERS} threads"
    return [
        compare(metric, "MB/s", ours, mk, Target(1.0), threads),
        compare(metric, "MB/s", ours, lt),
        compare(metric, "MB/s", ours, sha1, note="hashlib SHA-1 on one thread: one-core limit"),
        compare(
            f"v1 piece hashing, {label}, CPU cost",
            "MB/CPU-s",
            check.cpu_samples(ours),
            check.cpu_samples(mk),
            note="bytes hashed per CPU-second over all threads (the hashing only), "
            "what a busy machine cannot take away",
        ),
    ]


def _raise(error: Exception) -> Callable[[], float]:
    def measure() -> float:
        raise error

    return measure


# ---------------------------------------------------------------------------
# Parts 2 and 3: servers


def start_servers(ctx: Context, stack: contextlib.ExitStack[Any]) -> list[S3Endpoint | Unavailable]:
    """Two s3torrent servers, torrent hashing on and off, started at the same time."""
    return servers.enter_all(
        stack,
        lambda: servers.s3torrent(ctx, env={ENABLED_VAR: "true"}),
        lambda: servers.s3torrent(ctx, env={ENABLED_VAR: "false"}),
    )


def put_client(ep: S3Endpoint) -> S3Client:
    """boto3 that streams the body as is: unsigned payload, no checksum, no retries."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=ep.url,
        region_name=servers.REGION,
        aws_access_key_id=ep.access_key,
        aws_secret_access_key=ep.secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=300,
        ),
    )


def _port(ep: S3Endpoint) -> int:
    return int(ep.url.rsplit(":", 1)[1])


def fresh_request(ep: S3Endpoint, method: str, path: str) -> tuple[float, int, bytes]:
    """One anonymous request on a new connection: (ms from connect to last byte, status, body)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", _port(ep), timeout=60)
    try:
        conn.request(method, path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return (time.perf_counter() - start) * 1000, resp.status, body


def _put(client: S3Client, key: str, src: Path, size: int, acl: str | None = None) -> None:
    extra: dict[str, Any] = {"ACL": acl} if acl else {}
    if size == src.stat().st_size:
        with open(src, "rb") as f:
            client.put_object(Bucket=BUCKET, Key=key, Body=f, ContentLength=size, **extra)
    else:
        with open(src, "rb") as f:
            body = f.read(size)
        client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentLength=size, **extra)


def _prepared(ep: S3Endpoint | Unavailable) -> tuple[S3Endpoint, S3Client] | Unavailable:
    if isinstance(ep, Unavailable):
        return ep
    try:
        client = put_client(ep)
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=BUCKET)
    except Exception as e:
        return Unavailable(f"creating the bucket failed: {with_log(e, ep)}")
    return ep, client


def _put_subject(
    name: str,
    server: tuple[S3Endpoint, S3Client] | Unavailable,
    src: Path,
    statuses: dict[str, int],
) -> Subject:
    """PUT the file to a fresh key; records the status of one ?torrent per subject."""
    size = src.stat().st_size

    def measure() -> float:
        if isinstance(server, Unavailable):
            raise server
        ep, client = server
        key = f"put-{uuid.uuid4().hex}"
        try:
            start = time.perf_counter()
            _put(client, key, src, size, acl="public-read")
            seconds = time.perf_counter() - start
            head = client.head_object(Bucket=BUCKET, Key=key)
            if head["ContentLength"] != size:
                raise RuntimeError(f"stored {head['ContentLength']} bytes, expected {size}")
            if name not in statuses:
                statuses[name] = fresh_request(ep, "GET", f"/{BUCKET}/{key}?torrent")[1]
            client.delete_object(Bucket=BUCKET, Key=key)  # keep the disk small between runs
            # Untimed: let the deleted blob's pages go before the next run fills the page
            # cache again (bench/README.md, hashing).
            time.sleep(SETTLE_AFTER_DELETE)
        except Exception as e:
            raise with_log(e, ep) from e
        return size / seconds / MB

    return name, measure


def put_rows(
    ctx: Context,
    on: tuple[S3Endpoint, S3Client] | Unavailable,
    off: tuple[S3Endpoint, S3Client] | Unavailable,
    src: Path,
) -> list[Row]:
    label = label_of(src.stat().st_size)
    ctx.log(f"  PutObject {label}, torrent hashing on vs off")
    statuses: dict[str, int] = {}
    s_on, s_off = alternate(
        ctx,
        [
            _put_subject("hashing on", on, src, statuses),
            _put_subject("hashing off", off, src, statuses),
        ],
        balanced=True,
    )
    # The switch must really switch: ?torrent answers 200 with hashing on, not with it off.
    seen_on, seen_off = statuses.get("hashing on"), statuses.get("hashing off")
    if seen_on is not None and seen_on != 200:
        s_on.notes.append(f"?torrent after PUT answered {seen_on} with hashing on")
    if seen_off == 200:
        s_off.notes.append(f"{ENABLED_VAR}=false did not disable torrents (?torrent gave 200)")
    return [
        compare(f"PutObject {label} (boto3, single PUT)", "MB/s", s_on, s_off, Target(0.95),
                "ratio = torrent hashing on / off"),
    ]  # fmt: skip


def small_put_rows(
    ctx: Context,
    on: tuple[S3Endpoint, S3Client] | Unavailable,
    off: tuple[S3Endpoint, S3Client] | Unavailable,
) -> list[Row]:
    """4 KiB PUTs per second, torrents on vs off: what a small object's torrent costs its
    write (the hashing is tiny; the piece hashes, swarm ids, torrents row and publication
    are not). Two rows: private objects (most writes), and objects of a bucket a policy
    makes public, each of which has a public torrent."""
    from bench.s3_small import WRK_SCRIPT, Plan, asyncio_load, prepare, wrk_load

    seconds, keys = ctx.size(6, 2), ctx.size(1000, 200)
    have_wrk = ensure_apt("wrk", binary="wrk") is not None
    tool = "wrk" if have_wrk else "bench.loadgen"
    workdir = ctx.scratch("hashing-small")
    body = workdir / "body.bin"
    body.write_bytes(os.urandom(SMALL_PUT_SIZE))
    script = workdir / "cycle.lua"
    script.write_text(WRK_SCRIPT)

    def subject(
        name: str, server: tuple[S3Endpoint, S3Client] | Unavailable, bucket: str
    ) -> Subject:
        plans: list[Plan] = []

        def measure() -> float:
            if isinstance(server, Unavailable):
                raise server
            ep = server[0]
            try:
                if not plans:  # the two servers share a name: a folder each
                    (workdir / name).mkdir(exist_ok=True)
                    if bucket == PUBLIC_SMALL_BUCKET:
                        from tests.seeding import public_read_policy

                        client = ep.client()
                        client.create_bucket(Bucket=bucket)
                        client.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))
                    plans.append(prepare(ep, workdir / name, keys, body, bucket=bucket))
                plan = plans[0]
                paths = plan.paths["PUT"]
                if have_wrk:
                    load = wrk_load(plan.port, "PUT", paths, body, seconds, script)
                else:
                    load = asyncio_load(plan.port, "PUT", paths, body, seconds)
            except Exception as e:
                raise with_log(e, ep) from e
            if load.ok == 0:
                raise RuntimeError(f"{name}: no 2xx ({load.non_2xx} non-2xx, {load.errors} errors)")
            return load.rate

        return name, measure

    rows = []
    for label, bucket, what in (
        ("PutObject 4 KiB, 16 connections", "bench-small", "private 4 KiB objects"),
        (
            "PutObject 4 KiB, public bucket, 16 connections",
            PUBLIC_SMALL_BUCKET,
            "4 KiB objects of a bucket a policy makes public (each has a public torrent)",
        ),
    ):
        ctx.log(f"  {label} ({tool}, {seconds} s), torrents on vs off")
        s_on, s_off = alternate(
            ctx,
            [subject("torrents on", on, bucket), subject("torrents off", off, bucket)],
            balanced=True,
        )
        note = f"presigned PUTs of {what} by {tool}; ratio = torrents on / off"
        rows.append(compare(label, "ops/s", s_on, s_off, Target(0.95), note))
    return rows


PUBLIC_SMALL_BUCKET = "bench-small-public"


def latency_rows(
    ctx: Context, server: tuple[S3Endpoint, S3Client] | Unavailable, src: Path
) -> list[Row]:
    sizes = [4 << 10, 1 << 20, 64 << 20] + ([] if ctx.quick else [1 << 30])
    sizes = [s for s in sizes if s <= src.stat().st_size]
    rows = []
    for size in sizes:
        label = label_of(size)
        runs = ctx.runs if size >= 64 << 20 else max(ctx.runs, 5)
        ctx.log(f"  first ?torrent after PutObject, {label}")
        t, h = alternate(ctx, _latency_subjects(server, src, size), runs=runs)
        note = ""
        if t.stats is not None:
            met = "met" if t.stats.median < LATENCY_TARGET_MS else "NOT met"
            note = (
                f"target < {LATENCY_TARGET_MS:g} ms: {met} (median {t.stats.median:.1f} ms, "
                f"max {t.stats.maximum:.1f} ms, {t.stats.n} fresh keys)"
            )
        rows.append(compare(f"first ?torrent after PUT, {label}", "ms", t, h, None, note))
    return rows


def _latency_subjects(
    server: tuple[S3Endpoint, S3Client] | Unavailable, src: Path, size: int
) -> list[Subject]:
    current: list[str] = []  # the key the ?torrent subject just made, for the HEAD

    def torrent() -> float:
        if isinstance(server, Unavailable):
            raise server
        ep, client = server
        key = f"lat-{size}-{uuid.uuid4().hex}"
        try:
            _put(client, key, src, size, acl="public-read")
        except Exception as e:
            raise with_log(e, ep) from e
        ms, status, body = fresh_request(ep, "GET", f"/{BUCKET}/{key}?torrent")
        current.append(key)
        if status != 200:
            raise RuntimeError(f"?torrent answered {status}: {body[:200]!r}")
        pieces_length = _torrent_length(body)
        if pieces_length is not None and pieces_length != size:
            raise RuntimeError(f"torrent describes {pieces_length} bytes, expected {size}")
        return ms

    def head() -> float:
        if isinstance(server, Unavailable):
            raise server
        if not current:
            raise RuntimeError("no fresh object (the ?torrent subject failed)")
        ep, client = server
        key = current.pop()
        ms, status, _ = fresh_request(ep, "HEAD", f"/{BUCKET}/{key}")
        client.delete_object(Bucket=BUCKET, Key=key)
        if status != 200:
            raise RuntimeError(f"HEAD answered {status}")
        return ms

    return [("?torrent", torrent), ("HEAD (same object)", head)]


def _torrent_length(data: bytes) -> int | None:
    try:
        from s3torrent.torrent.metainfo import parse_torrent
    except ImportError:
        return None
    return parse_torrent(data).length


# ---------------------------------------------------------------------------


def run(ctx: Context) -> list[Row]:
    ensure_pip("boto3", module="boto3")
    size = ctx.size(1 << 30, 64 << 20)
    ctx.log(f"  writing {label_of(size)} test file")
    src = make_file(ctx.scratch("hashing") / "file.bin", size)

    rows = hashing_rows(ctx, src)

    with contextlib.ExitStack() as stack:
        on, off = start_servers(ctx, stack)
        on_ready, off_ready = _prepared(on), _prepared(off)
        rows += put_rows(ctx, on_ready, off_ready, src)
        rows += small_put_rows(ctx, on_ready, off_ready)
        rows += latency_rows(ctx, on_ready, src)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit("usage: python -m bench.hashing --worker {ours,libtorrent,sha1} FILE PIECE_LENGTH")
