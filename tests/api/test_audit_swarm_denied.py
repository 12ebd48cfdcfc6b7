"""A change of access that keeps a torrent public for some networks only drops, from the
swarm the tracker keeps, the peers it would no longer admit: their addresses are not handed
to the peers still allowed.

Until 2026-12-07 the swarm kept over the change (revoked, parked and registered again) came
back whole: a peer announced from a network the narrowed policy now denies was refused at
its own next announce, but stayed in every peer list handed to the others until it expired
(an hour), so allowed clients went on connecting to it; and the origin seeder went on
counting its pieces as held in the swarm (withholding them from the others meanwhile)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_torrent_context import http_get
from tests.conftest import LiveServer, make_client, start_server
from tests.seeding import fetch_torrent, info_hash_v1, seeder_stats, wait_for

DENIED = "127.0.0.9"  # in 127.0.0.0/8, not in 127.0.0.0/29
KEPT = "127.0.0.2"
ASKING = "127.0.0.3"


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("swarm-denied"), workers=request.param)
    yield srv
    srv.stop()


def _policy(bucket: str, network: str, deny: str | None = None) -> str:
    resource = f"arn:aws:s3:::{bucket}/*"
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": resource,
            "Condition": {"IpAddress": {"aws:SourceIp": network}},
        }
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


def _announce(server: LiveServer, ih: bytes, source: str, port: int, left: int) -> dict[bytes, Any]:
    query = (
        f"info_hash={quote_from_bytes(ih)}&peer_id={quote_from_bytes(os.urandom(20))}"
        f"&port={port}&uploaded=0&downloaded=0&left={left}&compact=1&numwant=50"
    )
    status, body = http_get(f"{server.endpoint}/announce?{query}", source)
    assert status == 200, body
    answer: dict[bytes, Any] = bdecode(body)
    return answer


def _peers(answer: dict[bytes, Any]) -> set[tuple[str, int]]:
    assert b"failure reason" not in answer, answer
    raw: bytes = answer[b"peers"]
    return {
        (".".join(str(b) for b in raw[i : i + 4]), int.from_bytes(raw[i + 4 : i + 6], "big"))
        for i in range(0, len(raw), 6)
    }


@pytest.mark.parametrize("narrowing", ["allow-narrowed", "deny-added"])
def test_a_newly_denied_peer_is_not_handed_to_the_others(
    server: LiveServer, narrowing: str
) -> None:
    s3 = make_client(server.endpoint)
    bucket = f"swarm-denied-{server.workers}-{narrowing}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=os.urandom(300_000))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/8"))
    ih = info_hash_v1(fetch_torrent(server.endpoint, bucket, "data.bin"))
    _peers(_announce(server, ih, DENIED, 51001, left=0))
    _peers(_announce(server, ih, KEPT, 51002, left=0))
    before = _peers(_announce(server, ih, ASKING, 51003, left=100))
    assert {(DENIED, 51001), (KEPT, 51002)} <= before
    # The origin seeder counts both seeds' pieces as out there (see peer/policy.py).
    assert _remembered(server, ih) == 2
    if narrowing == "allow-narrowed":
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/29"))
    else:
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/8", DENIED))
    # The denied peer's own announce is refused...
    refused = _announce(server, ih, DENIED, 51001, left=0)
    assert refused.get(b"failure reason") == b"unregistered torrent"
    # ...and the others no longer get its address, while the kept peer stays listed.
    after = _peers(_announce(server, ih, ASKING, 51003, left=100))
    assert (KEPT, 51002) in after
    assert (DENIED, 51001) not in after, after
    # Nor does the seeder count on the denied seed any more (decided again after its grace).
    wait_for(lambda: _remembered(server, ih) == 1, "the seeder to forget the denied seed", 5)


def _remembered(server: LiveServer, ih: bytes) -> int:
    torrent = seeder_stats(server.endpoint)["torrents"].get(ih.hex(), {})
    return int(torrent.get("remembered", 0))


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("trust-ip"), env={"S3TORRENT_TRACKER__TRUST_IP_PARAM": "true"}
    )
    yield srv
    srv.stop()


def test_naming_a_peers_address_does_not_stop_that_peer(trusting: LiveServer) -> None:
    """Under trust_ip_param another host names a listed peer's address and its peer id (a
    compact=0 answer told it) to stop it: refused, and the peer stays listed."""
    s3 = make_client(trusting.endpoint)
    bucket = "trust-ip"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=os.urandom(300_000), ACL="public-read")
    ih = info_hash_v1(fetch_torrent(trusting.endpoint, bucket, "data.bin"))
    victim = quote_from_bytes(b"-VV0001-" + os.urandom(12))

    def announce(source: str, extra: str) -> dict[bytes, Any]:
        query = f"info_hash={quote_from_bytes(ih)}&uploaded=0&downloaded=0&compact=1&{extra}"
        status, body = http_get(f"{trusting.endpoint}/announce?{query}", source)
        assert status == 200, body
        answer: dict[bytes, Any] = bdecode(body)
        return answer

    _peers(announce(KEPT, f"peer_id={victim}&key=secret&left=0&port=51002"))
    forged = announce(
        DENIED, f"peer_id={victim}&key=guess&ip={KEPT}&left=0&port=51002&event=stopped"
    )
    assert forged.get(b"failure reason") == b"peer id in use from another address", forged
    asking = quote_from_bytes(os.urandom(20))
    assert (KEPT, 51002) in _peers(announce(ASKING, f"peer_id={asking}&left=100&port=51003"))


def test_a_handshake_during_the_grace_does_not_spare_a_denied_connection(
    server: LiveServer,
) -> None:
    """A revocation suspends the seeder's swarm, and after a short grace decides each of its
    connections again if the torrent came back. Until 2026-12-07 a handshake of an allowed
    peer within that grace (any busy swarm has one) resumed the swarm itself, and the
    decision after the grace found nothing suspended: the connection of a peer the change
    denies went on for as long as it lasted."""
    from tests.interop.test_seeder_per_peer_revocation import _raw_peer_from

    s3 = make_client(server.endpoint)
    bucket = f"grace-{server.workers}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=os.urandom(2 * 1024 * 1024))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/8"))
    ih = info_hash_v1(fetch_torrent(server.endpoint, bucket, "data.bin"))
    denied, kept = _raw_peer_from(server, DENIED), _raw_peer_from(server, KEPT)
    newcomer = None
    try:
        assert denied.handshake(ih) and kept.handshake(ih)
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/29"))
        newcomer = _raw_peer_from(server, ASKING)
        assert newcomer.handshake(ih)
        assert denied.closed_by_peer(timeout=2.0), "the denied peer is still served"
        assert not kept.closed_by_peer(timeout=0.5)
    finally:
        for peer in (denied, kept, newcomer):
            if peer is not None:
                peer.close()


def test_a_handshake_that_finds_the_last_connection_denied_is_served(server: LiveServer) -> None:
    """The same, with the denied peer the swarm's only connection: deciding it again within
    the newcomer's handshake empties the swarm, which the newcomer must not be left in."""
    from s3torrent.peer import wire
    from tests.interop.test_seeder_per_peer_revocation import _raw_peer_from

    s3 = make_client(server.endpoint)
    bucket = f"grace-last-{server.workers}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=os.urandom(2 * 1024 * 1024))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/8"))
    ih = info_hash_v1(fetch_torrent(server.endpoint, bucket, "data.bin"))
    denied = _raw_peer_from(server, DENIED)
    newcomer = None
    try:
        assert denied.handshake(ih)
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/29"))
        newcomer = _raw_peer_from(server, ASKING)
        newcomer.sock.settimeout(5)
        assert newcomer.handshake(ih)
        newcomer.send(wire.Interested())
        newcomer.read_until(wire.Unchoke.MSG_ID)
        newcomer.send(wire.Request(0, 0, 16 * 1024))
        assert len(newcomer.read_until(wire.Piece.MSG_ID)) >= 16 * 1024
        assert denied.closed_by_peer(timeout=2.0)
    finally:
        for peer in (denied, newcomer):
            if peer is not None:
                peer.close()
