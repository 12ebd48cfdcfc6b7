"""A bucket policy that decides by an object's tags (s3:ExistingObjectTag/<key>) decides the
torrent channels as it decides REST: the tracker, the origin seeder and the web seed ask the
one decision with the object's tags as they are stored now, and real clients holding the
torrent get nothing once a tag makes the object private.

Until 2026-12-07 the torrent channels asked the decision with no tags at all: a Deny on a
tag ("classification=confidential") never applied to them, so tagging a published object
confidential refused REST GETs and `?torrent` while the tracker, the seeder and the web seed
went on serving it to anyone holding its torrent; and an Allow on a tag served the torrent
file while no channel would carry it."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client, start_server
from tests.interop.clients import DRIVERS, ClientFailed, Job, missing
from tests.seeding import RawPeer, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Two workers: the tag change may land on either, the tracker and seeder live in one.
    srv = start_server(tmp_path_factory.mktemp("tag-torrents"), workers=2)
    yield srv
    srv.stop()


def _policy(bucket: str, *statements: dict[str, Any]) -> str:
    resource = f"arn:aws:s3:::{bucket}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Principal": "*", "Action": "s3:GetObject", "Resource": resource, **s}
                for s in statements
            ],
        }
    )


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _info_hash(torrent: bytes) -> bytes:
    return hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()


def _announce_refused(server: LiveServer, info_hash: bytes) -> bool:
    query = (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(os.urandom(20))}"
        "&port=51413&uploaded=0&downloaded=0&left=100&compact=1"
    )
    status, body = _fetch(f"{server.endpoint}/announce?{query}")
    assert status == 200, body
    return b"failure reason" in body


def _handshake_refused(server: LiveServer, info_hash: bytes) -> bool:
    peer = RawPeer(server.peer_port)
    try:
        return not peer.handshake(info_hash)
    finally:
        peer.close()


def _web_seed_status(torrent: bytes, name: str) -> int:
    url = bdecode(torrent)[b"url-list"][0].decode() + name
    return _fetch(url)[0]


@pytest.mark.parametrize("client", ["libtorrent", "aria2"])
def test_tagging_a_published_object_confidential_stops_every_channel(
    server: LiveServer, tmp_path: Path, client: str
) -> None:
    why = missing(client)
    assert why is None, why
    s3 = make_client(server.endpoint)
    bucket = f"tag-deny-{client}"
    s3.create_bucket(Bucket=bucket)
    # Public, except what is tagged confidential (the usual "tag to withhold" policy).
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            bucket,
            {"Effect": "Allow"},
            {
                "Effect": "Deny",
                "Condition": {
                    "StringEquals": {"s3:ExistingObjectTag/classification": "confidential"}
                },
            },
        ),
    )
    data = os.urandom(3_000_000)
    s3.put_object(Bucket=bucket, Key="report.bin", Body=data)
    status, torrent = _fetch(f"{server.endpoint}/{bucket}/report.bin?torrent")
    assert status == 200, torrent
    info_hash = _info_hash(torrent)
    assert not _announce_refused(server, info_hash)

    s3.put_object_tagging(
        Bucket=bucket,
        Key="report.bin",
        Tagging={"TagSet": [{"Key": "classification", "Value": "confidential"}]},
    )
    # REST and ?torrent refuse at once...
    assert _fetch(f"{server.endpoint}/{bucket}/report.bin")[0] == 403
    assert _fetch(f"{server.endpoint}/{bucket}/report.bin?torrent")[0] == 403
    # ...and within a second so do the tracker, the seeder and the web seed.
    wait_for(lambda: _announce_refused(server, info_hash), "the tracker to refuse", 1.5)
    assert _handshake_refused(server, info_hash)
    assert _web_seed_status(torrent, "report.bin") == 403
    # A real client holding the torrent from when it was public gets nothing.
    job = Job(
        torrent=torrent, magnet=None, name="report.bin", data=data, workdir=tmp_path, timeout=8
    )
    with pytest.raises(ClientFailed):
        DRIVERS[client](job)
    got = tmp_path / "out" / "report.bin"
    assert not got.exists() or got.read_bytes() != data


def test_an_allow_by_tag_is_carried_by_every_channel_until_the_tag_goes(
    server: LiveServer, tmp_path: Path
) -> None:
    why = missing("libtorrent")
    assert why is None, why
    s3 = make_client(server.endpoint)
    bucket = "tag-allow"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            bucket,
            {
                "Effect": "Allow",
                "Condition": {"StringEquals": {"s3:ExistingObjectTag/public": "yes"}},
            },
        ),
    )
    data = os.urandom(3_000_000)
    s3.put_object(Bucket=bucket, Key="shared.bin", Body=data, Tagging="public=yes")
    s3.put_object(Bucket=bucket, Key="kept.bin", Body=b"k" * 300_000, Tagging="public=no")
    assert _fetch(f"{server.endpoint}/{bucket}/kept.bin?torrent")[0] == 403
    status, torrent = _fetch(f"{server.endpoint}/{bucket}/shared.bin?torrent")
    assert status == 200, torrent
    info_hash = _info_hash(torrent)
    # The torrent file handed out has a live swarm: tracker, seeder and web seed carry it.
    assert not _announce_refused(server, info_hash)
    job = Job(
        torrent=torrent, magnet=None, name="shared.bin", data=data, workdir=tmp_path, timeout=60
    )
    assert DRIVERS["libtorrent"](job) == data
    # The tag goes: every channel stops within a second.
    s3.delete_object_tagging(Bucket=bucket, Key="shared.bin")
    assert _fetch(f"{server.endpoint}/{bucket}/shared.bin")[0] == 403
    wait_for(lambda: _announce_refused(server, info_hash), "the tracker to refuse", 1.5)
    assert _handshake_refused(server, info_hash)
    assert _web_seed_status(torrent, "shared.bin") == 403


def test_tagging_confidential_cuts_downloads_under_way(server: LiveServer) -> None:
    """A web-seed range GET and a plain anonymous GET streaming when the tag arrives are cut
    within about a second: each is asked again with the object's tags as stored now (the plain
    GET's own context holds the tags of when it began)."""
    s3 = make_client(server.endpoint)
    bucket = "tag-cut"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(
            bucket,
            {"Effect": "Allow"},
            {"Effect": "Deny", "Condition": {"StringEquals": {"s3:ExistingObjectTag/hold": "1"}}},
        ),
    )
    size = 64 * 1024 * 1024
    s3.put_object(Bucket=bucket, Key="big.bin", Body=os.urandom(size), Tagging="hold=0")
    status, torrent = _fetch(f"{server.endpoint}/{bucket}/big.bin?torrent")
    assert status == 200, torrent
    web_seed = bdecode(torrent)[b"url-list"][0].decode() + "big.bin"
    plain = f"{server.endpoint}/{bucket}/big.bin"
    got = {web_seed: 0, plain: 0}
    ended = {web_seed: threading.Event(), plain: threading.Event()}

    def slow_reader(url: str) -> None:
        req = urllib.request.Request(url, headers={"Range": f"bytes=0-{size - 1}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                while chunk := r.read(64 * 1024):
                    got[url] += len(chunk)
                    time.sleep(0.01)  # a slow client: ~6 MB/s
        except Exception:
            pass
        ended[url].set()

    for url in got:
        threading.Thread(target=slow_reader, args=(url,), daemon=True).start()
    wait_for(lambda: all(got.values()), "both downloads to start", 10)
    s3.put_object_tagging(
        Bucket=bucket, Key="big.bin", Tagging={"TagSet": [{"Key": "hold", "Value": "1"}]}
    )
    tagged_at = time.monotonic()
    for url in got:
        assert ended[url].wait(10), url
        assert time.monotonic() - tagged_at < 2.0, url
        assert got[url] < size, url
