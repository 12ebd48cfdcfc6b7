"""Swarms in the field: the torrent exactly as served, downloaded by every common client.

Three setups on one s3torrent (tracker, origin seeder and web seed, default settings):

* the eight-client mix, started together: what the origin sends by channel, and when each
  client finishes;
* libtorrent leechers arriving one after another, against the same arrivals on a
  libtorrent seeder;
* one lone leecher of each client, against the same client downloading from a libtorrent
  seeder (found through a tracker that names only that seeder).

The clients are the interop suite's drivers (tests/interop/clients.py). Each download gets a
fresh object (its own info-hash), so swarm memory never carries pieces from one run into
the next. Loopback quirks: clients announce from loopback addresses; libtorrent leechers
here allow several connections per address (as the swarm benchmark's do, and qBittorrent's
driver), rtorrent keeps one peer per address, Transmission drops the 127.0.0.0/8 peers a
tracker names: the origin's peer listener (and the libtorrent seeder of Transmission's
anchor) is on this host's own address where it has one. The server runs under
bench/field_probe.py, which counts the origin's bytes by client for the log.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import http.server
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Context, Row, Samples, Target, Unavailable, compare
from bench.s3_large import make_file
from bench.seeder import (
    BUCKET,
    ROOT_KEYS,
    Published,
    drop_leechers,
    libtorrent_seed,
    lt,
    lt_session,
    publish,
    s3torrent_seeder,
    seeder_stats,
    session_port,
)

TITLE = "Swarms in the field: the torrent as served, every common client"
DESCRIPTION = (
    "The .torrent exactly as `?torrent` serves it (our tracker, the origin seeder and the web "
    "seed; default settings) on a 100 MiB object (quick: 4 MiB), a fresh object for every "
    "download. **Mix**: eight clients started together (libtorrent ×2, qBittorrent-nox, "
    "aria2, Transmission, rtorrent, ctorrent, WebTorrent on node; the interop suite's "
    "drivers): origin bytes by channel in copies of the object (target: seeder + web seed "
    "≤ 1.3), and each client's completion from its launch (client start-up included). A "
    "client that finished stays in the swarm, seeding, until every client is done, as "
    "users' clients do (aria2 is told --seed-time=0 and leaves at once); until 2026-12-02 "
    "each client quit the moment it finished, so the last ones (Transmission, rtorrent) "
    "had only the origin left: 2.06 copies that way in the same setup. "
    "**Staggered**: 8 libtorrent leechers (quick: 3), one every 0.5 s (one alone takes about "
    "1 s), each timed "
    "from its own start, against the same arrivals on a libtorrent seeder (a full mesh). "
    "**Lone**: one leecher of each client alone, against the same client downloading from a "
    "libtorrent seeder that a small tracker names as the only peer (target ≥ 0.8×; MB/s "
    "from launch, so client start-up counts on both sides; quick: libtorrent). "
    "Addresses: five clients of the mix bind their own address (rtorrent keeps one peer per "
    "address), 10.200.0.11-15 added to `lo` for the run where the machine allows it, else "
    "127.0.0.11-15; the others announce from 127.0.0.1. Transmission drops the 127.0.0.0/8 "
    "peers a tracker names (on loopback-only addresses only the origin could serve it), so "
    "the origin's peer "
    "listener, and the libtorrent seeder of Transmission's anchor, listen on the host's own "
    "address (in the mix Transmission reaches the origin, and the peers that connect to it). "
    "The log gives the origin's bytes by client and channel (bench/field_probe.py). The "
    "libtorrent-only, no-web-seed reference is the `swarm` benchmark's s3torrent rows."
)

MB = 1_000_000
MIX = (
    "libtorrent",
    "libtorrent",
    "qbittorrent",
    "aria2",
    "transmission",
    "rtorrent",
    "ctorrent",
    "webtorrent",
)
# Distinct addresses where a client can bind one (rtorrent keeps one peer per address); the
# others announce from 127.0.0.1, where the origin seeder is. Where this machine lets us
# (root with CAP_NET_ADMIN), the distinct ones are 10.200.0.x added to `lo` for the run, not
# 127.0.0.x: Transmission drops every 127.0.0.0/8 peer a tracker names, so on loopback
# addresses only the origin could serve it, which no deployment sees.
LOOPBACK_ADDRESSES = ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15")
LAB_ADDRESSES = ("10.200.0.11", "10.200.0.12", "10.200.0.13", "10.200.0.14", "10.200.0.15")
MIX_ADDRESSES = [
    LOOPBACK_ADDRESSES[0],
    LOOPBACK_ADDRESSES[1],
    LOOPBACK_ADDRESSES[2],
    LOOPBACK_ADDRESSES[3],
    "127.0.0.1",
    LOOPBACK_ADDRESSES[4],
    "127.0.0.1",
    "127.0.0.1",
]


@contextlib.contextmanager
def lab_addresses() -> Iterator[bool]:
    """Add LAB_ADDRESSES to `lo` for the run and use them in MIX_ADDRESSES; False (and the
    127.0.0.x ones) where the machine does not let us."""

    def ip_addr(verb: str, ip: str) -> bool:
        try:
            done = subprocess.run(
                ["ip", "addr", verb, f"{ip}/32", "dev", "lo"], capture_output=True, check=False
            )
        except OSError:  # no `ip` command
            return False
        return done.returncode == 0 or b"exists" in done.stderr

    added: list[str] = []
    for ip in LAB_ADDRESSES:
        if not ip_addr("add", ip):
            break
        added.append(ip)
    ok = len(added) == len(LAB_ADDRESSES)
    lab = dict(zip(LOOPBACK_ADDRESSES, LAB_ADDRESSES, strict=True))
    if ok:
        MIX_ADDRESSES[:] = [lab.get(a, a) for a in MIX_ADDRESSES]
    try:
        yield ok
    finally:
        back = {v: k for k, v in lab.items()}
        MIX_ADDRESSES[:] = [back.get(a, a) for a in MIX_ADDRESSES]
        for ip in added:
            ip_addr("del", ip)


LONE = ("libtorrent", "qbittorrent", "aria2", "transmission", "rtorrent", "ctorrent", "webtorrent")
ONE_COPY = "one copy"
# This host's non-loopback address (host_address), or "" when it has none.
HOST: list[str] = []


# ---------------------------------------------------------------- clients


def _clients() -> Any:
    """The interop drivers (tests/interop/clients.py), or Unavailable."""
    try:
        from tests.interop import clients
    except ImportError as e:  # run from elsewhere than the repository root
        raise Unavailable(f"the interop client drivers cannot be imported: {e}") from None
    return clients


def lt_leecher(job: Any) -> bytes:
    """libtorrent, as the swarm benchmark's leechers: several connections per address
    (every peer is at 127.0.0.1 here), plaintext, no DHT/LSD/uTP."""
    clients = _clients()
    lib = lt()
    session = lt_session(listen_interfaces=f"{job.address}:0")
    params = lib.add_torrent_params()
    params.ti = lib.torrent_info(lib.bdecode(job.torrent))
    params.save_path = str(job.workdir / "out")
    handle = session.add_torrent(params)
    try:
        deadline = time.monotonic() + job.timeout
        path = job.workdir / "out" / job.name
        while time.monotonic() < deadline:
            if handle.status().is_seeding:
                # Every piece passed its hash: done (as the swarm benchmark times it). The
                # file is checked after, untimed: libtorrent may take seconds to write it out.
                SEEDING_AT[job.workdir] = time.monotonic()
                handle.flush_cache()
                while not clients._file_matches(path, job.data):
                    if time.monotonic() > deadline:
                        raise clients.ClientFailed("seeding, but the bytes on disk differ")
                    time.sleep(0.05)
                data: bytes = clients._done(job)
                return data
            time.sleep(0.05)
        raise clients.ClientFailed("timed out")
    finally:
        drop_leechers([session], [handle])


# The last lone run's origin copies by channel (seeder, web seed), for the log.
LONE_CHANNELS: dict[str, tuple[float, float]] = {}
# Where bench/field_probe.py writes the origin's bytes by object, channel and client.
PROBE_FILE: list[Path] = []
LONE_CLIENTS: dict[str, dict[str, tuple[int, int]]] = {}
# The last mix's origin bytes by client (by_client), for the log.
MIX_CLIENTS: list[dict[str, tuple[int, int]]] = []
# When a libtorrent leecher of the benchmark saw every piece verified, by its job's workdir.
SEEDING_AT: dict[Path, float] = {}


def driver(name: str) -> Callable[[Any], bytes]:
    if name == "libtorrent":
        return lt_leecher
    clients = _clients()
    why = clients.missing(name)
    if why is not None:
        raise Unavailable(why)
    fn: Callable[[Any], bytes] = clients.DRIVERS[name]
    return fn


# ---------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class Obj:
    pub: Published
    key: str
    served: bytes  # the .torrent as served
    data: bytes
    path: Path  # the bytes under the torrent's name (for a libtorrent seeder)


class Objects:
    """Fresh public objects of the same bytes (each its own info-hash), removed after use."""

    def __init__(self, endpoint: str, peer_port: int, source: Path, scratch: Path) -> None:
        self.endpoint = endpoint
        self.peer_port = peer_port
        self.source = source
        self.data = source.read_bytes()
        self.scratch = scratch
        self.count = 0

    @contextlib.contextmanager
    def fresh(self, tag: str) -> Iterator[Obj]:
        self.count += 1
        key = f"{tag}-{self.count}.bin"
        folder = self.scratch / f"obj-{self.count}"
        folder.mkdir()
        path = folder / key
        os.link(self.source, path)
        pub = publish(self.endpoint, self.peer_port, path, key)
        with urllib.request.urlopen(f"{self.endpoint}/{BUCKET}/{key}?torrent", timeout=60) as r:
            served = r.read()
        try:
            yield Obj(pub, key, served, self.data, path)
        finally:
            self._delete(key)
            path.unlink(missing_ok=True)

    def _delete(self, key: str) -> None:
        import boto3
        from botocore.config import Config

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ROOT_KEYS[0],
            aws_secret_access_key=ROOT_KEYS[1],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        with contextlib.suppress(Exception):
            s3.delete_object(Bucket=BUCKET, Key=key)


def by_channel(obj: Obj) -> tuple[int, int]:
    """(seeder bytes, web seed bytes) the origin sent for this object's torrent."""
    entry = seeder_stats(obj.pub.stats_url)["torrents"].get(obj.pub.info_hash) or {}
    return int(entry.get("bytes_sent", 0)), int(entry.get("web_seed_bytes", 0))


def by_client(obj: Obj) -> dict[str, tuple[int, int]]:
    """The origin's bytes (and requests or refusals) for this object, by channel and client
    ("seeder libtorrent@127.0.0.11", "webseed webtorrent@127.0.0.1", "refused ..."), as
    bench/field_probe.py counted them; empty when the server runs without the probe."""
    if not PROBE_FILE:
        return {}
    time.sleep(0.6)  # its next write
    try:
        counts = json.loads(PROBE_FILE[0].read_text())
    except (OSError, ValueError):
        return {}
    return {k: (int(v[0]), int(v[1])) for k, v in counts.get(obj.key, {}).items()}


def said_by_client(counts: dict[str, tuple[int, int]], size: int) -> str:
    parts = []
    for label, (nbytes, events) in sorted(counts.items()):
        if label.startswith("refused"):
            parts.append(f"{label} {events}x")
        else:
            parts.append(f"{label} {nbytes / size:.2f}")
    return "; ".join(parts)


@contextlib.contextmanager
def probed(out: Path) -> Iterator[None]:
    """s3torrent started meanwhile runs under bench/field_probe.py (unless the caller named
    another command in BENCH_S3TORRENT_CMD)."""
    if os.environ.get("BENCH_S3TORRENT_CMD"):
        yield
        return
    probe = Path(__file__).resolve().parent / "field_probe.py"
    os.environ["BENCH_S3TORRENT_CMD"] = f"{sys.executable} {probe} {out}"
    PROBE_FILE[:] = [out]
    try:
        yield
    finally:
        del os.environ["BENCH_S3TORRENT_CMD"]


def job_for(
    obj: Obj, torrent: bytes, workdir: Path, timeout: float, address: str = "127.0.0.1"
) -> Any:
    workdir.mkdir(parents=True, exist_ok=True)
    return _clients().Job(
        torrent=torrent,
        magnet=None,
        name=obj.key,
        data=obj.data,
        workdir=workdir,
        timeout=timeout,
        address=address,
    )


def run_clients(
    names: tuple[str, ...], jobs: list[Any], *, stay: bool = False
) -> list[float | str]:
    """Start every client at once; seconds to its verified download, or why it failed.
    With `stay`, a client that finished keeps seeding until every client is done (or
    failed), as users' clients stay in a swarm; its time is still its own completion."""
    start = time.monotonic()
    ended: set[Path] = set()
    everyone = threading.Event()
    lock = threading.Lock()

    def end(job: Any) -> None:
        with lock:
            ended.add(job.workdir)
            if len(ended) == len(jobs):
                everyone.set()

    def linger(job: Any) -> None:
        SEEDING_AT.setdefault(job.workdir, time.monotonic())
        end(job)
        everyone.wait(timeout=max(0.0, start + job.timeout - time.monotonic()))

    if stay:
        jobs = [dataclasses.replace(job, linger=linger) for job in jobs]

    def one(name: str, job: Any) -> float | str:
        try:
            driver(name)(job)
        except Unavailable as e:
            return f"unavailable: {e}"
        except Exception as e:
            # Client logs redraw a progress line: keep one line of their tail.
            said = " ".join(str(e).split())
            return f"{type(e).__name__}: {said[-160:]}"
        finally:
            end(job)  # failed, or finished (again for a lingering client: a set)
        return SEEDING_AT.pop(job.workdir, time.monotonic()) - start

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(one, names, jobs))


# ---------------------------------------------------------------- a tracker for the anchor


def host_address() -> str | None:
    """This host's non-loopback IPv4 address, if it has one: Transmission drops every
    127.0.0.0/8 peer a tracker names, so a seeder it must reach listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent
        except OSError:
            return None
        ip = str(s.getsockname()[0])
    return None if ip.startswith("127.") else ip


@contextlib.contextmanager
def lone_tracker(port: int, ip: str = "127.0.0.1") -> Iterator[str]:
    """An HTTP tracker that names one peer (ip:port) for every torrent."""
    compact = b"d8:intervali60e12:min intervali60e5:peers6:"
    compact += struct.pack(">4sH", socket.inet_aton(ip), port) + b"e"
    # The original peer list for a client that does not ask for compact (ctorrent).
    listed = b"d8:intervali60e12:min intervali60e5:peersld2:ip%d:%s4:porti%deeee" % (
        len(ip),
        ip.encode(),
        port,
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = compact if "compact=1" in self.path else listed
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A client stopping sends its last announce and leaves without reading the answer.
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/announce"
    finally:
        server.shutdown()
        server.server_close()


def anchor_torrent(served: bytes, tracker: str) -> bytes:
    """The same info dict, announcing only to `tracker`, no web seed."""
    from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

    meta = dict(bdecode(served))
    for k in (b"url-list", b"announce-list"):
        meta.pop(k, None)
    meta[b"announce"] = tracker.encode()
    out: bytes = bencode(meta)
    return out


# ---------------------------------------------------------------- the three setups


def mix_run(
    objs: Objects, scratch: Path, timeout: float
) -> tuple[dict[str, float | str], float, float]:
    """The eight clients together: (completion by client, seeder copies, web seed copies)."""
    size = len(objs.data)
    with objs.fresh("mix") as obj:
        jobs = [
            job_for(obj, obj.served, scratch / f"{i}-{n}", timeout, MIX_ADDRESSES[i])
            for i, n in enumerate(MIX)
        ]
        results = run_clients(MIX, jobs, stay=True)
        time.sleep(0.5)  # the last bytes counted
        seeder, web = by_channel(obj)
        MIX_CLIENTS[:] = [by_client(obj)]
    labels = [f"{n} #{MIX[:i].count(n) + 1}" if MIX.count(n) > 1 else n for i, n in enumerate(MIX)]
    return dict(zip(labels, results, strict=True)), seeder / size, web / size


def staggered_ours(
    objs: Objects, n: int, gap: float, scratch: Path, timeout: float
) -> tuple[list[float], float]:
    """n libtorrent leechers of the torrent as served, one every `gap` seconds."""
    with objs.fresh("staggered") as obj:
        times = staggered(obj.served, n, gap, scratch, timeout, lambda sessions, handles: None)
        time.sleep(0.5)
        seeder, web = by_channel(obj)
    return times, (seeder + web) / len(objs.data)


def staggered(
    torrent: bytes,
    n: int,
    gap: float,
    scratch: Path,
    timeout: float,
    introduce: Callable[[list[Any], list[Any]], None],
) -> list[float]:
    """Seconds each of n leechers (started `gap` apart) takes from its own start."""
    lib = lt()
    sessions: list[Any] = []
    handles: list[Any] = []
    started: list[float] = []
    done: dict[int, float] = {}
    t0 = time.monotonic()
    try:
        while len(done) < n:
            now = time.monotonic()
            if now - t0 > timeout + n * gap:
                raise TimeoutError(f"{n - len(done)} of {n} staggered leechers unfinished")
            if len(handles) < n and now >= t0 + len(handles) * gap:
                ses = lt_session()
                atp = lib.add_torrent_params()
                atp.ti = lib.torrent_info(lib.bdecode(torrent))
                save = scratch / f"st-{len(handles)}"
                save.mkdir(parents=True, exist_ok=True)
                atp.save_path = str(save)
                sessions.append(ses)
                handles.append(ses.add_torrent(atp))
                started.append(now)
                introduce(sessions, handles)
            for i, h in enumerate(handles):
                if i not in done and h.status().is_seeding:
                    done[i] = now - started[i]
            time.sleep(0.02)
        return [done[i] for i in range(n)]
    finally:
        drop_leechers(sessions, handles)
        time.sleep(1.0)  # their `stopped` announces


def staggered_anchor(
    obj: Obj, n: int, gap: float, scratch: Path, timeout: float
) -> tuple[list[float], float]:
    """The same arrivals on a libtorrent seeder: each newcomer is told the seed and everyone."""
    with libtorrent_seed(obj.pub.torrent, obj.path, super_seeding=False) as (seed, seed_port):
        before = int(seed.status().total_payload_upload)
        ports: list[int] = []

        def introduce(sessions: list[Any], handles: list[Any]) -> None:
            newcomer = handles[-1]
            newcomer.connect_peer(("127.0.0.1", seed_port))
            for port in ports:
                newcomer.connect_peer(("127.0.0.1", port))
            ports.append(session_port(sessions[-1]))

        times = staggered(obj.pub.torrent, n, gap, scratch, timeout, introduce)
        sent = int(seed.status().total_payload_upload) - before
    return times, sent / len(obj.data)


def lone_pair(
    objs: Objects, name: str, scratch: Path, timeout: float
) -> tuple[float | str, float | str]:
    """MB/s of one leecher of `name`: from us as served, and from a libtorrent seeder."""
    size = len(objs.data)
    with objs.fresh(f"lone-{name}") as obj:
        t = run_clients((name,), [job_for(obj, obj.served, scratch / f"{name}-ours", timeout)])[0]
        time.sleep(0.3)  # the last bytes counted
        seeder, web = by_channel(obj)
        LONE_CLIENTS[name] = by_client(obj)
    ours: float | str = t if isinstance(t, str) else size / t / MB
    LONE_CHANNELS[name] = (seeder / size, web / size)
    ip = "127.0.0.1"
    if name == "transmission":
        ip = HOST[0] if HOST else ""
        if not ip:
            return ours, "not measurable: Transmission drops loopback peers, no other address"
    with (
        objs.fresh(f"anchor-{name}") as obj,
        host_seed(obj.pub.torrent, obj.path, ip) as seed_port,
        lone_tracker(seed_port, ip) as tracker,
    ):
        torrent = anchor_torrent(obj.served, tracker)
        time.sleep(0.5)  # the seed's listener and its torrent ready before the client asks
        a = run_clients((name,), [job_for(obj, torrent, scratch / f"{name}-lt", timeout)])[0]
    anchor: float | str = a if isinstance(a, str) else size / a / MB
    return ours, anchor


@contextlib.contextmanager
def host_seed(torrent: bytes, data: Path, ip: str) -> Iterator[int]:
    """A libtorrent seed of `data` listening on `ip` (libtorrent_seed's, elsewhere than
    127.0.0.1): its port."""
    if ip == "127.0.0.1":
        with libtorrent_seed(torrent, data, super_seeding=False) as (_seed, port):
            yield port
        return
    lib = lt()
    session = lt_session(listen_interfaces=f"{ip}:0")
    atp = lib.add_torrent_params()
    atp.ti = lib.torrent_info(lib.bdecode(torrent))
    atp.save_path = str(data.parent)
    atp.flags |= lib.torrent_flags.seed_mode
    handle = session.add_torrent(atp)
    try:
        yield session_port(session)
    finally:
        session.remove_torrent(handle)
        del session


# ---------------------------------------------------------------- rows


def one_copy(n: int) -> Samples:
    return Samples(ONE_COPY, [1.0] * max(1, n))


def run(ctx: Context) -> list[Row]:
    size = ctx.size(full=100 << 20, quick=4 << 20)
    lt()
    _clients()
    # Full: 3 mixes, 3 staggered and 2 lone runs per client (about 5 minutes here). Our
    # staggered swarm finishes in about 0.75 s or, now and then, in 1.2-1.6 s (before and
    # after the tracker relay of 2026-12-05 alike): with two runs, the median was the mean
    # of whichever came up.
    runs = 1 if ctx.quick else max(1, min(ctx.runs, 3))
    staggered_n, gap = (3, 0.5) if ctx.quick else (8, 0.5)
    lone_clients: tuple[str, ...] = ("libtorrent",) if ctx.quick else LONE
    # While working on one part: BENCH_FIELD_PARTS=mix,staggered,lone and
    # BENCH_FIELD_LONE=webtorrent,transmission (default: everything).
    parts = set(os.environ.get("BENCH_FIELD_PARTS", "mix,staggered,lone").split(","))
    if os.environ.get("BENCH_FIELD_LONE"):
        lone_clients = tuple(os.environ["BENCH_FIELD_LONE"].split(","))
    timeout = 15.0 if ctx.quick else 30 + size / (2 * MB)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(probed(ctx.scratch("field-probe") / "clients.json"))
        if not stack.enter_context(lab_addresses()):
            ctx.log("  (no addresses could be added to lo: the mix runs on 127.0.0.x)")
        # The origin's peer listener on this host's address where it has one, as a
        # deployment has it (never on loopback: Transmission drops 127.0.0.0/8 peers, and
        # keeps one peer per address, so the clients announce from loopback).
        HOST[:] = [host_address() or ""]
        endpoint, peer_port = stack.enter_context(
            s3torrent_seeder(ctx, peer_host=HOST[0] or "127.0.0.1")
        )
        source = make_file(ctx.scratch("field-data") / "field.bin", size)
        objs = Objects(endpoint, peer_port, source, ctx.scratch("field-objects"))
        if "mix" in parts:
            rows += mix_rows(ctx, objs, runs, timeout)
        if "staggered" in parts:
            rows += staggered_rows(ctx, objs, runs, staggered_n, gap, timeout)
        if "lone" in parts:
            rows += lone_rows(ctx, objs, min(runs, 2), lone_clients, timeout)
    return rows


def mix_rows(ctx: Context, objs: Objects, runs: int, timeout: float) -> list[Row]:
    total, seeder, web = Samples("s3torrent"), Samples("seeder"), Samples("web seed")
    per_client: dict[str, Samples] = {}
    for i in range(runs):
        if ctx.remaining() <= 0:
            total.notes.append(f"time box reached after {i} of {runs} runs")
            break
        try:
            times, s, w = mix_run(objs, ctx.scratch(f"mix{i}"), timeout)
        except Exception as e:  # one broken run must not end the suite
            total.error = f"{type(e).__name__}: {e}"
            break
        total.values.append(s + w)
        seeder.values.append(s)
        web.values.append(w)
        for label, t in times.items():
            samples = per_client.setdefault(label, Samples(label))
            if isinstance(t, str):
                samples.notes.append(f"{label} run {i + 1}: {t}")
            else:
                samples.values.append(t)
        said = ", ".join(
            f"{k} failed" if isinstance(v, str) else f"{k} {v:.1f} s" for k, v in times.items()
        )
        ctx.log(f"    mix run {i + 1}: seeder {s:.2f} + web seed {w:.2f} copies; {said}")
        if MIX_CLIENTS and MIX_CLIENTS[0]:
            ctx.log(f"      by client: {said_by_client(MIX_CLIENTS[0], len(objs.data))}")
    n = len(total.values)
    rows = [
        compare(
            "mix of 8 clients: origin copies (seeder + web seed)",
            "×",
            total,
            one_copy(n),
            Target(1.3, higher_is_better=False),
        ),
        compare("mix of 8 clients: seeder copies", "×", seeder),
        compare("mix of 8 clients: web seed copies", "×", web),
    ]
    for label, samples in per_client.items():
        if not samples.values and samples.error is None:
            samples.error = samples.notes[-1] if samples.notes else "no run finished"
        rows.append(compare(f"mix of 8 clients: {label} completion", "s", samples))
    return rows


def staggered_rows(
    ctx: Context, objs: Objects, runs: int, n: int, gap: float, timeout: float
) -> list[Row]:
    medians = {k: Samples(k) for k in ("s3torrent as served", "libtorrent")}
    copies = {k: Samples(k) for k in medians}
    for i in range(runs):
        if ctx.remaining() <= 0:
            medians["s3torrent as served"].notes.append(f"time box reached after {i} of {runs}")
            break
        for name in medians:
            if medians[name].error is not None:
                continue
            scratch = ctx.scratch(f"staggered{i}")
            try:
                if name == "libtorrent":
                    with objs.fresh("staggered-anchor") as obj:
                        times, c = staggered_anchor(obj, n, gap, scratch, timeout)
                else:
                    times, c = staggered_ours(objs, n, gap, scratch, timeout)
            except Exception as e:
                medians[name].error = copies[name].error = f"{type(e).__name__}: {e}"
                continue
            medians[name].values.append(statistics.median(times))
            copies[name].values.append(c)
            ctx.log(
                f"    staggered {name} run {i + 1}: origin {c:.2f} copies, median "
                f"{statistics.median(times):.2f} s, worst {max(times):.2f} s"
            )
    label = f"staggered, {n} leechers {gap:g} s apart"
    return [
        compare(
            f"{label}: origin copies", "×", copies["s3torrent as served"], copies["libtorrent"]
        ),
        compare(
            f"{label}: median completion",
            "s",
            medians["s3torrent as served"],
            medians["libtorrent"],
            Target(1.5, higher_is_better=False),
        ),
    ]


def lone_rows(
    ctx: Context, objs: Objects, runs: int, names: tuple[str, ...], timeout: float
) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        ours, anchor = Samples("s3torrent as served"), Samples(f"{name} from libtorrent")
        for i in range(runs):
            if ctx.remaining() <= 0:
                ours.notes.append(f"time box reached after {i} of {runs} runs")
                break
            try:
                a, b = lone_pair(objs, name, ctx.scratch(f"lone-{name}{i}"), timeout)
            except Unavailable as e:
                ours.error = str(e)
                break
            for samples, value in ((ours, a), (anchor, b)):
                if isinstance(value, str):
                    samples.error = value
                else:
                    samples.values.append(value)
            seeder, web = LONE_CHANNELS.get(name, (0.0, 0.0))
            ctx.log(
                f"    lone {name} run {i + 1}: as served {a} MB/s (seeder {seeder:.2f} + web seed "
                f"{web:.2f} copies), from libtorrent {b} MB/s"
            )
            if LONE_CLIENTS.get(name):
                said = said_by_client(LONE_CLIENTS[name], len(objs.data))
                ctx.log(f"      by client: {said}")
        rows.append(compare(f"lone {name}", "MB/s", ours, anchor, Target(0.8)))
    return rows
