"""Web seed clients the swarm cannot serve, against a live server.

A swarm the tracker knows (a seed and two downloaders announce; nothing is fresh, so the web
seed refuses a client that is not alone) and web-seed-only clients on their own loopback
addresses, with no peer-wire connection: one that keeps what it gets must still finish (it
asks again for what it was refused, and after the policy's patience it is sent it), and
one downloader posing as eight clients from eight addresses, dropping what it gets and
asking again, gets no more than the torrent's rescue allowance (one copy), not eight.
The clients are plain HTTP range readers: no real client behaves this way on purpose.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, make_client, start_server

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("ws-rescue"))
    yield srv
    srv.stop()


def publish(live: LiveServer, key: str, size: int) -> tuple[bytes, dict[bytes, Any], bytes]:
    s3 = make_client(live.endpoint)
    with contextlib.suppress(Exception):
        s3.create_bucket(Bucket="rescue")
    data = os.urandom(size)
    s3.put_object(Bucket="rescue", Key=key, Body=data, ACL="public-read")
    with urllib.request.urlopen(f"{live.endpoint}/rescue/{key}?torrent", timeout=30) as r:
        torrent = bdecode(r.read())
    info_hash = hashlib.sha1(bencode(torrent[b"info"])).digest()
    return data, torrent, info_hash


def announce(live: LiveServer, info_hash: bytes, left: int) -> None:
    query = (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(os.urandom(20))}"
        f"&port=6999&uploaded=0&downloaded=0&left={left}&compact=1&event=started"
    )
    with urllib.request.urlopen(f"{live.endpoint}/_tracker/announce?{query}", timeout=10) as r:
        assert b"failure" not in r.read()


def web_seed_bytes(live: LiveServer, info_hash: bytes) -> int:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{live.endpoint}/_seeder/stats"
    req = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials(ROOT_AK, ROOT_SK), "s3", "us-east-1").add_auth(req)
    signed = urllib.request.Request(url, headers=dict(req.headers.items()))
    with urllib.request.urlopen(signed, timeout=30) as r:
        stats = json.loads(r.read())
    return int(stats["torrents"][info_hash.hex()]["web_seed_bytes"])


class RangeReader:
    """A web-seed-only client at its own loopback address: one piece per request."""

    def __init__(self, url: str, source: str, piece: int, size: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.source, self.piece, self.size = source, piece, size

    def get(self, index: int) -> bytes | None:
        """The piece, or None when refused (503) or cut short."""
        start = index * self.piece
        end = min(self.size, start + self.piece) - 1
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=30, source_address=(self.source, 0)
        )
        try:
            conn.request(
                "GET",
                self.path,
                headers={"Range": f"bytes={start}-{end}", "User-Agent": "rescue-test/1"},
            )
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()
        return body if resp.status == 206 and len(body) == end - start + 1 else None


def known_swarm(live: LiveServer, info_hash: bytes, size: int) -> None:
    """The tracker hears of a seed (so every piece is held) and two downloaders (so no web
    seed client is alone)."""
    announce(live, info_hash, 0)
    announce(live, info_hash, size)
    announce(live, info_hash, size)


def test_a_web_seed_only_client_the_swarm_cannot_serve_still_finishes(
    live: LiveServer, tmp_path: Path
) -> None:
    size = 4 * MiB
    data, torrent, info_hash = publish(live, "starving.bin", size)
    known_swarm(live, info_hash, size)
    piece = int(torrent[b"info"][b"piece length"])
    url = torrent[b"url-list"][0].decode() + "starving.bin"
    reader = RangeReader(url, "127.0.0.21", piece, size)
    count = -(-size // piece)
    got: dict[int, bytes] = {}
    refused = 0
    deadline = time.monotonic() + 120
    # Every missing piece at once, a round every second (refusals in a burst are held a
    # second each: the web seed's answer to clients that ask again at once).
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        while len(got) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} pieces"
            missing = [i for i in range(count) if i not in got]
            for index, body in zip(missing, pool.map(reader.get, missing), strict=True):
                if body is None:
                    refused += 1
                else:
                    got[index] = body
            time.sleep(1.0)
    assert b"".join(got[i] for i in range(count)) == data
    assert refused > 0  # the swarm held everything: it was refused first
    assert web_seed_bytes(live, info_hash) <= size + piece


def test_one_client_posing_as_many_gets_at_most_the_rescue_allowance(
    live: LiveServer, tmp_path: Path
) -> None:
    size = 4 * MiB
    _data, torrent, info_hash = publish(live, "hostile.bin", size)
    known_swarm(live, info_hash, size)
    piece = int(torrent[b"info"][b"piece length"])
    url = torrent[b"url-list"][0].decode() + "hostile.bin"
    count = -(-size // piece)
    readers = [RangeReader(url, f"127.0.0.{30 + n}", piece, size) for n in range(8)]

    def hammer(reader: RangeReader) -> int:
        """Ask for the same few pieces again and again, keeping nothing, for 25 s."""
        received = 0
        stop = time.monotonic() + 25
        while time.monotonic() < stop:
            for index in range(min(count, 4)):
                body = reader.get(index)
                received += len(body or b"")
            time.sleep(0.5)
        return received

    with concurrent.futures.ThreadPoolExecutor(len(readers)) as pool:
        received = sum(pool.map(hammer, readers))
    # Eight clients would each get a copy per client allowance; the torrent's allowance is
    # one copy (refilled over ten minutes: a few KiB more in 25 s).
    assert 0 < received <= size + 2 * piece * len(readers)
    assert web_seed_bytes(live, info_hash) <= size + 2 * piece * len(readers)
