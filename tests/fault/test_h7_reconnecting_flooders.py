"""A peer that floods the seeder with small messages and reconnects for a new input burst.

The seeder reads a peer's input at `seeder.input_rate` beyond what serving it earns, after
a burst of `seeder.input_burst`. When that burst was per connection, an attacker that
closed and reopened its connections had a fresh 64 KiB read from each, at about a
microsecond of the seeder's loop per byte, for as long as it kept reconnecting.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3torrent.peer import wire
from tests.conftest import LiveServer, make_client, start_server
from tests.seeding import (
    fetch_torrent,
    info_hash_v1,
    lt_add,
    lt_download,
    lt_session,
    seeder_stats,
    sha256,
    wait_for,
    without_web_seed,
)

pytestmark = pytest.mark.timeout(240)

MiB = 1024 * 1024
KiB = 1024
ATTACKER = "127.0.0.2"  # one source, not the downloader's 127.0.0.1
AT_ONCE = 4  # the attacker's connections open at a time (the per-address cap is 8 here)
BURST = 64 * KiB  # seeder.input_burst's default
RATE = 16 * KiB  # seeder.input_rate's default


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("h7-reconnecting"),
        env={"S3TORRENT_SEEDER__MODE": "fastest", "S3TORRENT_SEEDER__MAX_PER_IP": "8"},
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def objects(live: LiveServer) -> tuple[bytes, bytes, bytes]:
    """A small object the attacker names, and a 16 MiB one a real client downloads from
    the seeder alone (its torrent without the web seed)."""
    s3 = make_client(live.endpoint)
    s3.create_bucket(Bucket="h7-flood")
    s3.put_object(
        Bucket="h7-flood", Key="bait.bin", Body=os.urandom(65 * 16 * KiB), ACL="public-read"
    )
    data = os.urandom(16 * MiB)
    s3.put_object(Bucket="h7-flood", Key="big.bin", Body=data, ACL="public-read")
    bait = info_hash_v1(fetch_torrent(live.endpoint, "h7-flood", "bait.bin"))
    return bait, data, without_web_seed(fetch_torrent(live.endpoint, "h7-flood", "big.bin"))


def _reconnecting_flood(port: int, info_hash: bytes, seconds: float) -> None:
    """In a child process: AT_ONCE connections from ATTACKER, each a valid handshake and
    64 KiB of keep-alives, then closed and opened again, for `seconds`."""
    junk = bytes(BURST)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        socks = []
        for _ in range(AT_ONCE):
            try:
                sock = socket.create_connection(
                    ("127.0.0.1", port), timeout=2, source_address=(ATTACKER, 0)
                )
                hs = wire.Handshake.build(
                    info_hash, os.urandom(20), fast=True, extensions=True, v2=False
                )
                sock.sendall(hs.encode() + wire.encode_message(wire.Interested()) + junk)
                socks.append(sock)
            except OSError:
                pass  # refused at the per-address cap, or closed: try again
        time.sleep(0.02)  # the seeder reads what it allows of it
        for sock in socks:
            sock.close()


def timed_download(torrent: bytes, data: bytes, dest: Path) -> float:
    started = time.monotonic()
    path = lt_download(torrent, dest, timeout=90)
    took = time.monotonic() - started
    assert sha256(path.read_bytes()) == sha256(data)
    return took


def test_reconnecting_gains_a_flooder_no_new_input_burst(
    live: LiveServer, objects: tuple[bytes, bytes, bytes], tmp_path: Path
) -> None:
    """An attacker reconnecting its four connections in a loop, each sending a handshake
    and 64 KiB of keep-alives, while libtorrent downloads 16 MiB from another address.
    Before, the seeder read every connection's 64 KiB burst (megabytes a second, the loop
    busy about a microsecond a byte); now the burst and the rate belong to the attacker's
    address (a share for each of its connections open at once, as many as an honest client
    with that many would get), so it is read at most those shares' bursts plus their rate
    over the whole attack, however often it reconnects."""
    bait, data, torrent = objects
    baseline = timed_download(torrent, data, tmp_path / "alone")
    received_before = seeder_stats(live.endpoint)["bytes_received"]
    ctx = multiprocessing.get_context("spawn")
    attacker = ctx.Process(target=_reconnecting_flood, args=(live.peer_port, bait, 60.0))
    started = time.monotonic()
    attacker.start()
    try:
        time.sleep(1.0)  # the attack under way
        attacked = timed_download(torrent, data, tmp_path / "attacked")
        time.sleep(max(0.0, 3.0 - attacked))
        attacked_for = time.monotonic() - started
        received = seeder_stats(live.endpoint)["bytes_received"] - received_before
    finally:
        attacker.terminate()
        attacker.join(10)
    print(f"alone {baseline:.2f} s, attacked {attacked:.2f} s, read {received} bytes")
    # The attacker's address: a burst and the rate for each connection it holds open at
    # once (plus the handshakes, 73 bytes a connection, which the bursts cover); the
    # downloader's own input (its handshake, 1,024 requests and HAVEs, about 30 KiB) is
    # earned by what it gets, and 64 KiB of slack. Before: 12-14 MB.
    bound = AT_ONCE * (BURST + RATE * attacked_for) + 30 * KiB + 64 * KiB
    assert received < bound, (received, attacked_for)
    # A shared, loaded 2-core machine: slack for its noise, not for a flood's share.
    assert attacked < 1.5 * baseline + 1.0, (baseline, attacked)


def test_one_client_with_many_torrents_is_not_starved_by_sharing_its_address(
    live: LiveServer, tmp_path: Path
) -> None:
    """libtorrent opens one connection per torrent: eight torrents from one address share
    that address's unearned input (handshakes, extension handshakes, bitfields, the first
    requests) and are each read on what their own downloads earn, so all finish promptly,
    none of them closed as a flood."""
    s3 = make_client(live.endpoint)
    s3.create_bucket(Bucket="h7-many")
    datas = [os.urandom(2 * MiB) for _ in range(8)]
    torrents = []
    for n, data in enumerate(datas):
        s3.put_object(Bucket="h7-many", Key=f"part{n}.bin", Body=data, ACL="public-read")
        torrents.append(without_web_seed(fetch_torrent(live.endpoint, "h7-many", f"part{n}.bin")))
    accepted_before = seeder_stats(live.endpoint)["accepted"]
    session = lt_session()
    handles = [lt_add(session, tmp_path, torrent=t) for t in torrents]
    try:
        wait_for(lambda: all(h.status().is_seeding for h in handles), "all eight", timeout=30)
        names = [h.status().name for h in handles]
    finally:
        for handle in handles:
            session.remove_torrent(handle)
        del session
    for name, data in zip(names, datas, strict=True):
        assert sha256((tmp_path / name).read_bytes()) == sha256(data)
    # One connection per torrent: none was closed and made again.
    assert seeder_stats(live.endpoint)["accepted"] - accepted_before == len(torrents)
