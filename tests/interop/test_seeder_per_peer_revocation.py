"""A change of access that keeps a torrent public for some peers and not for others (a
bucket policy that starts denying one network, or a time condition that does) is decided
again for every peer connection the seeder holds, with that peer's own address: a peer no
longer allowed is closed within about a second, while the others go on.

Until 2026-12-07 the seeder, finding the torrent published again after the change, kept
every connection it had: libtorrent connected from the newly denied address went on
downloading to the end from the origin seeder, while the tracker, the web seed and REST
already refused that address."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, make_client, start_server
from tests.seeding import (
    RawPeer,
    fetch_torrent,
    info_hash_v1,
    lt_add,
    lt_session,
    wait_for,
    without_web_seed,
)

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MiB = 1024 * 1024
DENIED = "127.0.0.2"


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("per-peer"), workers=request.param)
    yield srv
    srv.stop()


def _policy(bucket: str, deny: str | None) -> str:
    resource = f"arn:aws:s3:::{bucket}/*"
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": resource}
    ]
    if deny is not None:
        statements.append(
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": resource,
                "Condition": {"IpAddress": {"aws:SourceIp": f"{deny}/32"}},
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _raw_peer_from(server: LiveServer, source: str) -> RawPeer:
    peer = RawPeer.__new__(RawPeer)
    peer.sock = socket.create_connection(
        ("127.0.0.1", server.peer_port), timeout=10, source_address=(source, 0)
    )
    peer.buf = bytearray()
    return peer


def test_a_peer_newly_denied_is_closed_and_the_others_go_on(server: LiveServer) -> None:
    s3 = make_client(server.endpoint)
    bucket = f"per-peer-raw-{server.workers}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=os.urandom(2 * MiB))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, None))
    ih = info_hash_v1(fetch_torrent(server.endpoint, bucket, "data.bin"))
    denied, allowed = _raw_peer_from(server, DENIED), RawPeer(server.peer_port)
    try:
        assert denied.handshake(ih) and allowed.handshake(ih)
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, DENIED))
        assert denied.closed_by_peer(timeout=1.5)
        assert not allowed.closed_by_peer(timeout=1.0)
    finally:
        denied.close()
        allowed.close()


def test_libtorrent_from_a_newly_denied_address_stops_getting_pieces(
    server: LiveServer, tmp_path: Path
) -> None:
    s3 = make_client(server.endpoint)
    bucket = f"per-peer-lt-{server.workers}"
    s3.create_bucket(Bucket=bucket)
    size = 32 * MiB
    s3.put_object(Bucket=bucket, Key="big.bin", Body=os.urandom(size))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, None))
    torrent = without_web_seed(fetch_torrent(server.endpoint, bucket, "big.bin"))
    session = lt_session(
        listen_interfaces=f"{DENIED}:0",
        outgoing_interfaces=DENIED,
        download_rate_limit=4 * MiB,
        ignore_limits_on_local_network=False,
    )
    handle = lt_add(session, tmp_path / "dl", torrent=torrent)
    try:
        wait_for(lambda: handle.status().progress > 0.05, "the download to start", 30)
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, DENIED))
        time.sleep(1.5)
        stalled = handle.status().total_wanted_done
        time.sleep(2.5)
        status = handle.status()
        assert not status.is_seeding
        assert status.total_wanted_done == stalled, (stalled, status.total_wanted_done)
        assert stalled < size
    finally:
        session.remove_torrent(handle)
        del session
