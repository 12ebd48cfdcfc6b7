"""The torrent as served (tracker, seeder and web seed) under the offload policy.

Real libtorrent leechers (and aria2c) download the .torrent exactly as `?torrent` serves it,
started together; every byte is checked, and the origin's bytes (seeder and web seed, from
/_seeder/stats) must stay near one copy of the object. A lone leecher still gets full speed,
a revocation cuts a web-seed download within about a second, and the web seed's own URL
leaves plain GETs alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, free_port, make_client, start_server

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MiB = 1024 * 1024
ARIA2_EXTRA: list[str] = []


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("ws-offload"))
    yield srv
    srv.stop()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        body: bytes = r.read()
    return body


def info_hash_hex(torrent: bytes) -> str:
    from fastbencode import bencode

    return hashlib.sha1(bencode(bdecode(torrent)[b"info"])).hexdigest()


def signed_fetch(url: str) -> bytes:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials(ROOT_AK, ROOT_SK), "s3", "us-east-1").add_auth(req)
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=dict(req.headers.items())), timeout=30
    ) as r:
        body: bytes = r.read()
    return body


def origin_bytes(endpoint: str, ih: str) -> tuple[int, int]:
    """(seeder bytes, web seed bytes) sent for one torrent."""
    stats = json.loads(signed_fetch(f"{endpoint}/_seeder/stats"))
    t = stats["torrents"].get(ih)
    return (int(t["bytes_sent"]), int(t["web_seed_bytes"])) if t else (0, 0)


def publish(live: LiveServer, bucket: str, key: str, size: int) -> tuple[bytes, bytes]:
    s3 = make_client(live.endpoint)
    with contextlib.suppress(Exception):
        s3.create_bucket(Bucket=bucket)
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
    return data, fetch(f"{live.endpoint}/{bucket}/{key}?torrent")


def lt_session() -> Any:
    import libtorrent as lt

    return lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "ssrf_mitigation": False,
            "allow_multiple_connections_per_ip": True,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "out_enc_policy": 2,
            "announce_to_all_tiers": False,
            "alert_mask": 0,
        }
    )


@dataclass(frozen=True, slots=True)
class SwarmResult:
    times: list[float]
    files: list[Path]


def lt_swarm(torrent: bytes, n: int, dest: Path, timeout: float = 120.0) -> SwarmResult:
    """n libtorrent leechers of the torrent as served, started together."""
    import libtorrent as lt

    sessions = [lt_session() for _ in range(n)]
    handles = []
    ti = lt.torrent_info(lt.bdecode(torrent))
    for i, ses in enumerate(sessions):
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(lt.bdecode(torrent))
        atp.save_path = str(dest / f"lt-{i}")
        handles.append(ses.add_torrent(atp))
    start = time.monotonic()
    done: dict[int, float] = {}
    try:
        while len(done) < n:
            assert time.monotonic() - start < timeout, f"{n - len(done)} leechers unfinished"
            for i, h in enumerate(handles):
                if i not in done and h.status().is_seeding:
                    done[i] = time.monotonic() - start
            time.sleep(0.05)
    finally:
        for ses, h in zip(sessions, handles, strict=True):
            ses.remove_torrent(h)
        time.sleep(0.5)  # their `stopped` announces
        del sessions
    return SwarmResult(
        [done[i] for i in range(n)], [dest / f"lt-{i}" / ti.name() for i in range(n)]
    )


def assert_same(files: list[Path], data: bytes) -> None:
    want = hashlib.sha256(data).hexdigest()
    for f in files:
        assert hashlib.sha256(f.read_bytes()).hexdigest() == want, f


def test_eight_libtorrent_leechers_cost_about_one_copy(live: LiveServer, tmp_path: Path) -> None:
    pytest.importorskip("libtorrent")
    size = 32 * MiB
    data, torrent = publish(live, "offload", "eight.bin", size)
    assert bdecode(torrent)[b"url-list"]  # the web seed is on, as served
    ih = info_hash_hex(torrent)
    result = lt_swarm(torrent, 8, tmp_path)
    assert_same(result.files, data)
    seeder, web = origin_bytes(live.endpoint, ih)
    stats = json.loads(signed_fetch(f"{live.endpoint}/_seeder/stats"))["torrents"][ih]
    assert web > 0  # the web seed took part
    assert stats["web_seed_refused"] > 0  # and sent the swarm to its peers for the rest
    assert (seeder + web) / size <= 1.3, stats


def test_lone_leecher_downloads_at_full_speed(live: LiveServer, tmp_path: Path) -> None:
    pytest.importorskip("libtorrent")
    size = 64 * MiB
    data, torrent = publish(live, "offload", "lone.bin", size)
    ih = info_hash_hex(torrent)
    result = lt_swarm(torrent, 1, tmp_path)
    assert_same(result.files, data)
    seeder, web = origin_bytes(live.endpoint, ih)
    # Nobody else has a piece: the web seed answers everything it is asked.
    assert seeder + web <= 1.1 * size
    assert size / result.times[0] > 40 * MiB, result.times


def aria2c(torrent_path: Path, dest: Path, port: int, address: str = "") -> subprocess.Popen[bytes]:
    """aria2c downloading the torrent as served, then seeding (until it is stopped); from
    `address` (a loopback address of its own: the origin tells clients apart by address,
    and in the field two clients do not share one)."""
    return subprocess.Popen(
        [
            "aria2c",
            *([f"--interface={address}"] if address else []),
            "--dir",
            str(dest),
            "--seed-time=10",
            "--seed-ratio=0",
            "--enable-dht=false",
            "--enable-peer-exchange=false",
            "--bt-enable-lpd=false",
            f"--listen-port={port}",
            "--summary-interval=0",
            "--console-log-level=warn",
            *ARIA2_EXTRA,
            str(torrent_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def aria2_done(path: Path, data: bytes) -> bool:
    """aria2c keeps its control file while it seeds: compare the bytes instead."""
    return path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data


def test_aria2_first_then_a_mixed_swarm_costs_about_one_copy(
    live: LiveServer, tmp_path: Path
) -> None:
    """aria2 takes the whole object alone, stays as a seed; the swarm after it gets the
    pieces from it and each other, not from the origin again."""
    pytest.importorskip("libtorrent")
    if shutil.which("aria2c") is None:
        pytest.skip("aria2c not installed")
    size = 32 * MiB
    data, torrent = publish(live, "offload", "mixed.bin", size)
    ih = info_hash_hex(torrent)
    path = tmp_path / "mixed.torrent"
    path.write_bytes(torrent)
    first = aria2c(path, tmp_path / "aria-first", free_port(), "127.0.0.21")
    procs = [first]
    try:
        deadline = time.monotonic() + 60
        while not aria2_done(tmp_path / "aria-first" / "mixed.bin", data):
            assert time.monotonic() < deadline, "aria2c did not finish"
            assert first.poll() is None, "aria2c exited"
            time.sleep(0.2)
        alone = sum(origin_bytes(live.endpoint, ih))
        procs.append(aria2c(path, tmp_path / "aria-second", free_port(), "127.0.0.22"))
        result = lt_swarm(torrent, 4, tmp_path)
        deadline = time.monotonic() + 60
        while not aria2_done(tmp_path / "aria-second" / "mixed.bin", data):
            assert time.monotonic() < deadline, "the second aria2c did not finish"
            time.sleep(0.1)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    files = [*result.files, *(tmp_path / d / "mixed.bin" for d in ("aria-first", "aria-second"))]
    assert_same(files, data)
    seeder, web = origin_bytes(live.endpoint, ih)
    assert alone >= size  # the first one alone: full speed from the origin
    stats = json.loads(signed_fetch(f"{live.endpoint}/_seeder/stats"))["torrents"][ih]
    # The first copy went to aria2 alone; the swarm after it gets the rest from aria2 and
    # each other: 1.02-1.15 copies here on a quiet machine (1.36 in a first cold run),
    # 1.32-1.34 under the full suite, and 1.6 once under a full suite on a loaded machine
    # (aria2 unchokes a few peers at a time and serves slower, and peers the swarm gives
    # nothing for a second are fed by the origin, by design). The bug this guards against
    # cost 2.0 and more.
    assert (seeder + web) / size <= 1.75, (alone, stats)


def test_revocation_cuts_a_web_seed_download_within_a_second(live: LiveServer) -> None:
    size = 64 * MiB
    _data, torrent = publish(live, "offload", "revoked.bin", size)
    url = bdecode(torrent)[b"url-list"][0].decode() + "revoked.bin"
    s3 = make_client(live.endpoint)
    got = [0]
    ended = threading.Event()
    ended_at = [0.0]

    def slow_reader() -> None:
        req = urllib.request.Request(url, headers={"Range": f"bytes=0-{size - 1}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                while chunk := r.read(64 * 1024):
                    got[0] += len(chunk)
                    time.sleep(0.01)  # a slow client: ~6 MB/s
        except Exception:
            pass
        ended_at[0] = time.monotonic()
        ended.set()

    t = threading.Thread(target=slow_reader, daemon=True)
    t.start()
    time.sleep(1.0)
    assert 0 < got[0] < size
    s3.put_object_acl(Bucket="offload", Key="revoked.bin", ACL="private")
    revoked_at = time.monotonic()
    assert ended.wait(10)
    assert ended_at[0] - revoked_at < 1.5
    assert got[0] < size
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(url)
    assert e.value.code == 403


def test_revocation_cuts_a_plain_anonymous_get(live: LiveServer) -> None:
    size = 64 * MiB
    publish(live, "offload", "plain.bin", size)
    s3 = make_client(live.endpoint)
    got = [0]
    ended = threading.Event()

    def slow_reader() -> None:
        try:
            with urllib.request.urlopen(f"{live.endpoint}/offload/plain.bin", timeout=30) as r:
                while chunk := r.read(64 * 1024):
                    got[0] += len(chunk)
                    time.sleep(0.01)
        except Exception:
            pass
        ended.set()

    threading.Thread(target=slow_reader, daemon=True).start()
    time.sleep(1.0)
    s3.put_object_acl(Bucket="offload", Key="plain.bin", ACL="private")
    revoked_at = time.monotonic()
    assert ended.wait(10)
    assert time.monotonic() - revoked_at < 1.5
    assert got[0] < size


def test_web_seed_url_is_not_the_object_url(live: LiveServer) -> None:
    _data, torrent = publish(live, "offload", "url.bin", 100_000)
    url = bdecode(torrent)[b"url-list"][0].decode()
    assert url == f"{live.endpoint}/_webseed/{info_hash_hex(torrent)}/"
    # Unknown swarm ids are refused; plain GETs are answered by S3 as before.
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(f"{live.endpoint}/_webseed/{'0' * 40}/url.bin")
    assert e.value.code == 403
    assert len(fetch(f"{live.endpoint}/offload/url.bin")) == 100_000


def test_web_seed_bad_requests_get_clear_answers(live: LiveServer) -> None:
    data, torrent = publish(live, "offload", "bad.bin", 100_000)
    url = bdecode(torrent)[b"url-list"][0].decode() + "bad.bin"
    for path, code in (("/_webseed/zz/bad.bin", 404), ("/_webseed/", 404)):
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(f"{live.endpoint}{path}")
        assert e.value.code == code, path
    put = urllib.request.Request(url, data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(put, timeout=10)
    assert e.value.code == 405
    past_end = urllib.request.Request(url, headers={"Range": "bytes=200000-"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(past_end, timeout=10)
    assert e.value.code == 416
    part = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(part, timeout=10) as r:
        assert r.status == 206 and r.read() == data[10:20]


def test_a_lone_webtorrent_is_served_as_one_client(live: LiveServer, tmp_path: Path) -> None:
    """WebTorrent asks the web seed (and connects to the seeder, and announces): one client,
    alone, so the web seed never refuses it. It holds WebTorrent's requests while the
    seeder serves it (peer/web_hold.py): a web seed that answers slows WebTorrent's peer
    wire threefold, and carried 6-12% of the object."""
    from tests.interop import clients

    why = clients.missing("webtorrent")
    if why is not None:
        pytest.skip(why)
    size = 16 * MiB
    data, torrent = publish(live, "offload", "lone-wt.bin", size)
    ih = info_hash_hex(torrent)
    job = clients.Job(
        torrent=torrent, magnet=None, name="lone-wt.bin", data=data, workdir=tmp_path, timeout=120
    )
    assert clients.webtorrent(job) == data
    stats = json.loads(signed_fetch(f"{live.endpoint}/_seeder/stats"))["torrents"][ih]
    assert stats["web_seed_requests"] > 0  # it used the web seed
    assert stats["web_seed_refused"] == 0, stats
    assert stats["web_seed_held"] > 0, stats
    # At most the pieces it asked the web seed for last, released once nothing else was
    # left for its peer wire.
    piece = int(bdecode(torrent)[b"info"][b"piece length"])
    assert stats["web_seed_bytes"] <= 2 * piece, stats
    assert stats["bytes_sent"] + stats["web_seed_bytes"] <= 1.1 * size
