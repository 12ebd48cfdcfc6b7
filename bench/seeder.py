"""Origin seeder throughput: one libtorrent leecher, our seeder vs a libtorrent seeder,
and the cost of MSE/PE with an RC4 payload against the plaintext wire on our seeder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import servers
from bench.harness import (
    Context,
    Row,
    Samples,
    Target,
    Unavailable,
    alternate,
    compare,
    ensure_pip,
    free_port,
    spawn,
    stop_process,
    wait_ready,
)
from bench.s3_large import make_file

TITLE = "Origin seeder: one leecher"
DESCRIPTION = (
    "One libtorrent leecher downloads a large object (1 GiB; quick: 64 MiB) over the peer "
    "wire, from s3torrent's seeder alone (no web seed, no tracker: the leecher is pointed at "
    "the peer port) and from a libtorrent seeder of the same .torrent and file. Payload MB/s "
    "from adding the torrent to the verified last piece (libtorrent checks every piece). "
    "Both sides serve from the page cache over loopback; leechers use the plaintext wire "
    "(encryption disabled). Target: ≥ 1.0× the libtorrent seeder. A second row measures "
    "MSE/PE: the same leecher with encryption forced and RC4 required (so the seeder reads "
    "and encrypts every block instead of sendfile) against the plaintext wire, on the same "
    "object in the same run; the ratio is the cost of encryption (no target). A third row "
    "compares that RC4 download with one from the libtorrent seeder, also RC4 (the leecher "
    "decrypts in both, so the gap between them is the seeders' own cost). A full run "
    "measures at least 9 rounds whatever --runs says, every other round in reverse order. "
    "The leecher writes into a file kept in the page cache from round to round (added with "
    "no_verify_files, it still downloads and checks every piece): on this VM, writing into "
    "freshly allocated pages made one round's rate swing 2x on either seeder."
)
# libtorrent's settings_pack: enc_policy pe_forced, enc_level pe_rc4.
RC4_FORCED = {"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2}

MB = 1_000_000
BUCKET = "bench-seeder"
ROOT_KEYS = ("benchroot", "benchroot-secret-key-0123456789")


def lt() -> Any:
    if not ensure_pip("libtorrent", module="libtorrent"):
        raise Unavailable("libtorrent Python bindings not available")
    import libtorrent

    return libtorrent


def lt_session(**overrides: Any) -> Any:
    lib = lt()
    settings: dict[str, Any] = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "ssrf_mitigation": False,
        "allow_multiple_connections_per_ip": True,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # Plaintext peer wire (pe_disabled): what the seeder rows compare; the MSE row
        # overrides it.
        "out_enc_policy": 2,
        "alert_mask": 0,
    }
    settings.update(overrides)
    return lib.session(settings)


def session_port(session: Any) -> int:
    return int(session.listen_port())


@dataclass(frozen=True, slots=True)
class Published:
    """An object on a running s3torrent, its .torrent without trackers or web seeds."""

    torrent: bytes
    info_hash: str
    size: int
    seeder_port: int
    stats_url: str


def strip_sources(torrent: bytes) -> bytes:
    from fastbencode import bdecode, bencode

    t = dict(bdecode(torrent))
    for k in (b"url-list", b"announce", b"announce-list"):
        t.pop(k, None)
    out: bytes = bencode(t)
    return out


# The supervisor's pid of each running `s3torrent_seeder`, by peer port (for `server_cpu`).
_server_pids: dict[int, int] = {}


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process and all its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total


def server_cpu(peer_port: int) -> float:
    """CPU seconds used so far by the s3torrent whose peer listener is `peer_port`."""
    return _tree_cpu(_server_pids[peer_port])


def own_cpu() -> float:
    """CPU seconds used so far by this process (every thread: the libtorrent sessions)."""
    t = os.times()
    return t.user + t.system


def threads_cpu() -> dict[int, float]:
    """CPU seconds used so far by each live thread of this process (its native id)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{task}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        out[int(task)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def lasting_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two `threads_cpu` readings of the threads alive at both but this
    one: the libtorrent seeders' sessions, which outlive a run's leecher sessions."""
    me = threading.get_native_id()
    return sum(after[t] - before[t] for t in before.keys() & after.keys() if t != me)


@contextlib.contextmanager
def s3torrent_seeder(
    ctx: Context, env: dict[str, str] | None = None, peer_host: str = "127.0.0.1"
) -> Iterator[tuple[str, int]]:
    """A fresh s3torrent on a free loopback port, its peer listener on a free port of
    `peer_host` (loopback by default; the tracker names it there): (endpoint, peer port)."""
    base = servers.s3torrent_command()
    workdir = ctx.scratch("s3torrent-seeder")
    port, peer_port = free_port(), free_port()
    full_env = {
        **os.environ,
        "S3TORRENT_ROOT_ACCESS_KEY": ROOT_KEYS[0],
        "S3TORRENT_ROOT_SECRET_KEY": ROOT_KEYS[1],
        "S3TORRENT_STORAGE__FSYNC": "false",
        **({} if peer_host == "127.0.0.1" else {"S3TORRENT_SEEDER__PUBLIC_HOST": peer_host}),
        **(env or {}),
    }
    log_path = workdir / "s3torrent.log"
    cmd = [
        *base,
        "serve",
        "--data-dir",
        str(workdir / "data"),
        "--listen",
        f"127.0.0.1:{port}",
        "--peer-listen",
        f"{peer_host}:{peer_port}",
    ]
    proc = spawn(cmd, log_path=log_path, env=full_env, cwd=workdir)
    _server_pids[peer_port] = proc.pid
    try:
        wait_ready(
            proc,
            f"http://127.0.0.1:{port}/_health",
            timeout=60,
            ok=lambda s: s == 200,
            log_path=log_path,
            name="s3torrent",
        )
        yield f"http://127.0.0.1:{port}", peer_port
    finally:
        _server_pids.pop(peer_port, None)
        stop_process(proc)


def publish(endpoint: str, peer_port: int, path: Path, key: str) -> Published:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ROOT_KEYS[0],
        aws_secret_access_key=ROOT_KEYS[1],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    with contextlib.suppress(Exception):
        s3.create_bucket(Bucket=BUCKET)
    # One PUT: hashed while uploading, so the torrent is ready at once.
    s3.upload_file(
        str(path),
        BUCKET,
        key,
        ExtraArgs={"ACL": "public-read"},
        Config=TransferConfig(multipart_threshold=8 << 30),
    )
    with urllib.request.urlopen(f"{endpoint}/{BUCKET}/{key}?torrent", timeout=120) as r:
        torrent = r.read()
    import hashlib

    from fastbencode import bdecode, bencode

    info_hash = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).hexdigest()
    return Published(
        strip_sources(torrent),
        info_hash,
        path.stat().st_size,
        peer_port,
        f"{endpoint}/_seeder/stats",
    )


def seeder_stats(stats_url: str) -> dict[str, Any]:
    """/_seeder/stats, signed as root (the seeder's state names every torrent it seeded)."""
    import json

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signed = AWSRequest(method="GET", url=stats_url)
    S3SigV4Auth(Credentials(*ROOT_KEYS), "s3", "us-east-1").add_auth(signed)
    req = urllib.request.Request(stats_url, headers=dict(signed.headers.items()))
    with urllib.request.urlopen(req, timeout=10) as r:
        stats: dict[str, Any] = json.loads(r.read())
    return stats


def origin_bytes(pub: Published, *, web_seed: bool = False) -> int:
    """What the origin sent for the torrent: its seeder, plus its web seed if asked."""
    entry = seeder_stats(pub.stats_url)["torrents"].get(pub.info_hash)
    if not entry:
        return 0
    return int(entry["bytes_sent"]) + (int(entry.get("web_seed_bytes", 0)) if web_seed else 0)


@contextlib.contextmanager
def libtorrent_seed(
    torrent: bytes, data: Path, *, super_seeding: bool
) -> Iterator[tuple[Any, int]]:
    """A libtorrent session seeding `data` (seed mode: no recheck): (handle, port)."""
    lib = lt()
    session = lt_session()
    atp = lib.add_torrent_params()
    atp.ti = lib.torrent_info(lib.bdecode(torrent))
    atp.save_path = str(data.parent)
    atp.flags |= lib.torrent_flags.seed_mode
    if super_seeding:
        atp.flags |= lib.torrent_flags.super_seeding
    if atp.ti.name() != data.name:
        raise RuntimeError("the seed's file must carry the torrent's name")
    handle = session.add_torrent(atp)
    try:
        yield handle, session_port(session)
    finally:
        session.remove_torrent(handle)
        del session


@dataclass(frozen=True, slots=True)
class SwarmRun:
    times: list[float]  # per leecher, seconds to finish
    origin_bytes: int


class LeecherFiles:
    """Where benchmark leechers write: one file set per (torrent, leecher slot), written once
    and overwritten by every later round, so a round writes into pages already resident.

    On this VM the balloon device has free page reporting on: about 2 s after the guest
    frees memory (a deleted leecher file) the host takes it back, and the next write into a
    page the host must fault in again is several times slower. One leecher writing 1 GiB
    into fresh pages spent up to 2.7 s of CPU in the kernel copy at random, so one round's
    rate swung 2x on either seeder (300 or 650 MB/s) with nothing changed. Leechers are
    added with no_verify_files (they trust an empty resume state, so they download every
    piece) and still check every piece's hash; a round is finished when all pieces are.

    The files live in /dev/shm while it has room (a disk file's dirty pages would be
    written back every 30 s, in the middle of a round), else under `fallback`."""

    SHM = Path("/dev/shm")

    def __init__(self, fallback: Path) -> None:
        self.fallback = fallback
        self._shm: Path | None = None
        self._slots: dict[tuple[str, int], Path] = {}

    def __enter__(self) -> LeecherFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shm is not None:
            shutil.rmtree(self._shm, ignore_errors=True)

    def _root(self, size: int) -> Path:
        with contextlib.suppress(OSError):
            st = os.statvfs(self.SHM)
            if st.f_bavail * st.f_frsize > size + (1 << 30):
                if self._shm is None:
                    self._shm = Path(tempfile.mkdtemp(prefix="bench-leechers-", dir=self.SHM))
                return self._shm
        return self.fallback

    def slot(self, torrent: bytes, index: int) -> Path:
        lib = lt()
        info = lib.torrent_info(lib.bdecode(torrent))
        key = (str(info.info_hash()), index)
        if key in self._slots:
            return self._slots[key]
        files = info.files()
        save = self._root(info.total_size()) / f"{key[0][:16]}-{index}"
        chunk = b"\xa5" * (8 << 20)
        for i in range(files.num_files()):
            path = save / files.file_path(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            left = files.file_size(i)
            with path.open("wb") as f:
                while left > 0:
                    left -= f.write(chunk[: min(left, len(chunk))])
        self._slots[key] = save
        return save


def add_leecher(session: Any, torrent: bytes, save: Path) -> Any:
    """A leecher of `torrent` writing into `save`, a `LeecherFiles` slot."""
    lib = lt()
    atp = lib.add_torrent_params()
    atp.ti = lib.torrent_info(lib.bdecode(torrent))
    atp.save_path = str(save)
    # The slot's file holds a past round's bytes: trust the empty resume state instead of
    # checking them, so every piece is downloaded (and hash-checked) again.
    atp.flags |= lib.torrent_flags.no_verify_files
    return session.add_torrent(atp)


def run_leechers(
    torrent: bytes,
    n: int,
    seed_port: int,
    files: LeecherFiles,
    *,
    timeout: float,
    origin_sent: Any,
    session_settings: dict[str, Any] | None = None,
) -> SwarmRun:
    """n libtorrent leechers (one session each) start together; every one is told the
    seed and every other leecher (a full mesh, no tracker)."""
    sessions = [lt_session(**(session_settings or {})) for _ in range(n)]
    handles = []
    before = origin_sent()
    try:
        for i, ses in enumerate(sessions):
            handles.append(add_leecher(ses, torrent, files.slot(torrent, i)))
        ports = [session_port(s) for s in sessions]
        start = time.monotonic()
        for i, h in enumerate(handles):
            h.connect_peer(("127.0.0.1", seed_port))
            for j, port in enumerate(ports):
                if j != i:
                    h.connect_peer(("127.0.0.1", port))
        times = wait_for_leechers(handles, start, timeout)
        check_downloaded(handles)
        return SwarmRun(times, origin_sent() - before)
    finally:
        drop_leechers(sessions, handles, delete_files=False)
        del sessions


def wait_for_leechers(handles: list[Any], start: float, timeout: float) -> list[float]:
    """Seconds from `start` until each leecher seeds; TimeoutError past `timeout`."""
    n = len(handles)
    done: dict[int, float] = {}
    deadline = start + timeout
    while len(done) < n:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{n - len(done)} of {n} leechers unfinished after {timeout:.0f} s")
        for i, h in enumerate(handles):
            if i not in done and h.status().is_seeding:
                done[i] = now - start
        time.sleep(0.02)
    return [done[i] for i in range(n)]


def check_downloaded(handles: list[Any]) -> None:
    """Every leecher received at least the whole torrent in this round: a slot's file from an
    earlier round must never count as downloaded."""
    for h in handles:
        status = h.status()
        size = h.torrent_file().total_size()
        if status.total_payload_download < size:
            raise RuntimeError(
                f"a leecher finished after receiving {status.total_payload_download} of "
                f"{size} bytes"
            )


def drop_leechers(sessions: list[Any], handles: list[Any], *, delete_files: bool = True) -> None:
    lib = lt()
    for ses, h in zip(sessions, handles, strict=False):
        with contextlib.suppress(Exception):
            if delete_files:
                ses.remove_torrent(h, lib.session.delete_files)
            else:
                ses.remove_torrent(h)


def run(ctx: Context) -> list[Row]:
    size = ctx.size(full=1 << 30, quick=64 << 20)
    lt()  # Unavailable early if libtorrent cannot be had
    data_dir = ctx.scratch("seeder-data")
    with contextlib.ExitStack() as stack:
        endpoint, peer_port = stack.enter_context(s3torrent_seeder(ctx))
        key = "seeder.bin"
        data = make_file(data_dir / key, size)
        pub = publish(endpoint, peer_port, data, key)
        _seed, seed_port = stack.enter_context(
            libtorrent_seed(pub.torrent, data, super_seeding=False)
        )
        timeout = 60 + size / (20 * MB)
        files = stack.enter_context(LeecherFiles(ctx.scratch("leechers")))

        def ours(session_settings: dict[str, Any] | None = None) -> float:
            r = run_leechers(
                pub.torrent,
                1,
                peer_port,
                files,
                timeout=timeout,
                origin_sent=lambda: origin_bytes(pub),
                session_settings=session_settings,
            )
            return size / r.times[0] / MB

        def ours_rc4() -> float:
            return ours(RC4_FORCED)

        def anchor(session_settings: dict[str, Any] | None = None) -> float:
            r = run_leechers(
                pub.torrent,
                1,
                seed_port,
                files,
                timeout=timeout,
                origin_sent=lambda: 0,
                session_settings=session_settings,
            )
            return size / r.times[0] / MB

        def anchor_rc4() -> float:
            return anchor(RC4_FORCED)

        # One leecher's rate on this shared machine swings by 2x between runs on either
        # side (274-546 MB/s from libtorrent in one run): more rounds in a full run, and
        # every other round in reverse order, so neither side always runs first.
        a, b, rc4, lt_rc4 = alternate(
            ctx,
            [
                ("s3torrent", ours),
                ("libtorrent", anchor),
                ("s3torrent RC4", ours_rc4),
                ("libtorrent RC4", anchor_rc4),
            ],
            runs=ctx.runs if ctx.quick else max(ctx.runs, 9),
            balanced=True,
        )
    label = f"{size >> 20} MiB" if size < 1 << 30 else f"{size >> 30} GiB"
    plaintext = Samples("s3torrent plaintext", a.values, a.error, a.notes)
    return [
        compare(f"one leecher, {label}", "MB/s", a, b, Target(1.0)),
        compare(f"one leecher, {label}, MSE RC4 vs plaintext", "MB/s", rc4, plaintext),
        compare(f"one leecher, {label}, MSE RC4 both seeders", "MB/s", rc4, lt_rc4),
    ]
