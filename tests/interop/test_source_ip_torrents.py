"""A torrent only some networks may read (a bucket policy that allows anonymous GetObject
from listed aws:SourceIp networks, no ACL): real clients in an allowed network download it
exactly as served (our tracker, the origin seeder, the web seed), byte for byte, and a
caller outside gets nothing from any channel.

Until 2026-12-07 such a torrent was never published (publication asked the decision from
no address, which an allow-list refuses): `?torrent` served the file to an allowed caller,
and then the tracker, the seeder and the web seed all refused it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client, start_server
from tests.interop.clients import DRIVERS, Job, missing

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("source-ip"), workers=2)
    yield srv
    srv.stop()


def _allow_from(bucket: str, network: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                    "Condition": {"IpAddress": {"aws:SourceIp": network}},
                }
            ],
        }
    )


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _publish(server: LiveServer, bucket: str, network: str, data: bytes) -> None:
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=data)
    s3.put_bucket_policy(Bucket=bucket, Policy=_allow_from(bucket, network))


def _announce(server: LiveServer, meta: dict[bytes, Any]) -> dict[bytes, Any]:
    import hashlib

    info_hash = hashlib.sha1(bencode(meta[b"info"])).digest()
    query = (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id=-TT0001-000000000001"
        "&port=51413&uploaded=0&downloaded=0&left=100&compact=1"
    )
    status, body = _fetch(f"{server.endpoint}/announce?{query}")
    assert status == 200
    answer: dict[bytes, Any] = bdecode(body)
    return answer


@pytest.mark.parametrize("client", ["aria2", "libtorrent"])
def test_clients_in_an_allowed_network_download_it_as_served(
    server: LiveServer, tmp_path: Path, client: str
) -> None:
    why = missing(client)
    assert why is None, why
    bucket = f"allowed-{client}"
    data = os.urandom(2_000_000)
    _publish(server, bucket, "127.0.0.0/8", data)
    status, torrent = _fetch(f"{server.endpoint}/{bucket}/data.bin?torrent")
    assert status == 200, torrent
    assert b"failure reason" not in bencode(_announce(server, bdecode(torrent)))
    job = Job(
        torrent=torrent, magnet=None, name="data.bin", data=data, workdir=tmp_path, timeout=90
    )
    assert DRIVERS[client](job) == data


def test_a_caller_outside_the_networks_gets_nothing(server: LiveServer) -> None:
    bucket = "elsewhere-only"
    data = os.urandom(300_000)
    _publish(server, bucket, "203.0.113.0/24", data)
    status, _ = _fetch(f"{server.endpoint}/{bucket}/data.bin?torrent")
    assert status == 403
    # Even knowing the torrent (the owner's copy, from the CLI's view of it), neither the
    # tracker nor the web seed carries it to 127.0.0.1.
    made = server.cli("torrent", "show", bucket, "data.bin")
    assert made.returncode == 0, made.stderr
    shown = dict(line.split(": ", 1) for line in made.stdout.splitlines() if ": " in line)
    assert shown["state"] == "ready", shown  # it has a torrent: public to its network
    hex_hash = shown["info-hash v1"]
    info_hash = bytes.fromhex(hex_hash)
    query = (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id=-TT0001-000000000002"
        "&port=51413&uploaded=0&downloaded=0&left=100&compact=1"
    )
    status, body = _fetch(f"{server.endpoint}/announce?{query}")
    assert status == 200 and b"failure reason" in body, body
    status, _ = _fetch(f"{server.endpoint}/_webseed/{hex_hash}/data.bin")
    assert status == 403
    assert urlsplit(server.endpoint).hostname == "127.0.0.1"
