"""The web seed is an HTTP request like a REST GET, and the one access decision sees its
headers as it sees a GET's: a bucket policy's aws:UserAgent and aws:Referer conditions (a
scraper's User-Agent refused, hotlinking from a site refused) hold on the web seed too,
for curl and for aria2 downloading a torrent through its web seed alone.

Until 2026-12-07 the web seed asked the decision with the client's address and the time
only: REST refused the User-Agent or Referer the policy denies, and the web seed served the
same bytes to the same request."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.interop.clients import missing
from tests.seeding import aria2_download

pytestmark = [pytest.mark.interop, pytest.mark.slow]

BOT = "BadBot/2.0 (+https://scraper.example/)"
PIRATE = "https://pirate.example/watch?v=1"


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("webseed-headers"), workers=request.param)
    yield srv
    srv.stop()


def _publish(server: LiveServer, bucket: str, data: bytes) -> bytes:
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=data)
    resource = f"arn:aws:s3:::{bucket}/*"
    statements = [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": resource},
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": resource,
            "Condition": {"StringLike": {"aws:UserAgent": "*BadBot*"}},
        },
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": resource,
            "Condition": {"StringLike": {"aws:Referer": "https://pirate.example/*"}},
        },
    ]
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements})
    )
    with urllib.request.urlopen(f"{server.endpoint}/{bucket}/data.bin?torrent", timeout=10) as r:
        torrent: bytes = r.read()
    return torrent


def _status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers={"Range": "bytes=0-99", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_the_web_seed_refuses_the_user_agent_and_referer_rest_refuses(
    server: LiveServer,
) -> None:
    torrent = _publish(server, f"hdr-{server.workers}", os.urandom(300_000))
    web_seed = bdecode(torrent)[b"url-list"][0].decode() + "data.bin"
    rest = f"{server.endpoint}/hdr-{server.workers}/data.bin"
    # Allowed: served (206), or refused by the offload policy (503: a piece it was sent
    # already), never 403; denied: 403, as REST.
    for headers, denied in (
        ({"User-Agent": "aria2/1.37.0"}, False),
        ({"User-Agent": BOT}, True),
        ({"Referer": "https://example.org/page"}, False),
        ({"Referer": PIRATE}, True),
        ({"User-Agent": BOT}, True),  # asked again in the other order: no answer is shared
        ({"User-Agent": "aria2/1.37.0"}, False),
    ):
        assert (_status(rest, headers) == 403) is denied, ("REST", headers)
        assert (_status(web_seed, headers) == 403) is denied, ("web seed", headers)


def test_aria2_with_a_refused_user_agent_gets_nothing_from_the_web_seed(
    server: LiveServer, tmp_path: Path
) -> None:
    why = missing("aria2")
    assert why is None, why
    data = os.urandom(1_000_000)
    bucket = f"hdr-aria2-{server.workers}"
    meta = bdecode(_publish(server, bucket, data))
    # The web seed alone: no tracker, so no peer wire.
    for field in (b"announce", b"announce-list"):
        meta.pop(field, None)
    path = tmp_path / "web-seed-only.torrent"
    path.write_bytes(bencode(meta))
    with pytest.raises(AssertionError, match="did not download"):
        aria2_download(
            path,
            tmp_path / "bot",
            "data.bin",
            data,
            tmp_path,
            free_port(),
            extra=(f"--user-agent={BOT}", "--max-tries=1", "--bt-stop-timeout=5"),
        )
    # Refused by the access decision, not by the offload policy.
    assert "status=403" in (tmp_path / "aria2.log").read_text(errors="replace")
