"""Fixes for what real clients tripped over: web-seed URL forms, dot segments, magnets that
every client accepts, an announce path libtorrent's SSRF mitigation allows, empty objects."""

from __future__ import annotations

import hashlib
import http.client as httpc
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, quote_from_bytes, urlsplit

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_torrent import error_code, http, info_bytes, torrent_url
from tests.conftest import LiveServer, make_client, start_server


def raw_get(url: str) -> tuple[int, bytes]:
    """GET exactly this URL: http.client sends the path as given, dot segments and all."""
    parts = urlsplit(url)
    conn = httpc.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def whatwg_normalised(url: str) -> str:
    """What a URL-normalising client (WebTorrent, Transmission) requests for `url`."""
    parts = urlsplit(url)
    out: list[str] = []
    for segment in parts.path.split("/")[1:]:
        if segment.lower() in (".", "%2e"):
            continue
        if segment.lower() in ("..", "%2e%2e", ".%2e", "%2e."):
            if out:
                out.pop()
            continue
        out.append(segment)
    return f"{parts.scheme}://{parts.netloc}/" + "/".join(out)


@pytest.fixture(scope="module", params=["v1", "hybrid", "v2"])
def fmt_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, LiveServer]]:
    fmt = str(request.param)
    srv = start_server(
        tmp_path_factory.mktemp(f"fix-{fmt}"), env={"S3TORRENT_TORRENT__FORMAT": fmt}
    )
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="fixes")
    yield fmt, srv
    srv.stop()


def put(srv: LiveServer, key: str, data: bytes, bucket: str = "fixes") -> Any:
    s3 = make_client(srv.endpoint)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
    return s3


def torrent_of(srv: LiveServer, key: str, bucket: str = "fixes") -> dict[bytes, Any]:
    status, _, body = http("GET", torrent_url(srv.endpoint, bucket, key))
    assert status == 200, body
    decoded: dict[bytes, Any] = bdecode(body)
    return decoded


def test_web_seed_serves_whatever_name_a_client_appends(
    fmt_server: tuple[str, LiveServer],
) -> None:
    """The web seed's own path ends in "/": libtorrent (v2 is multi-file to it) appends the
    name, WebTorrent used to fail on a directory form that named another path; here any
    appended name reaches the object."""
    _, srv = fmt_server
    # Two objects: a web seed that just sent every piece of one lets the swarm serve a
    # second request for it (503 Retry-After), which is the offload policy, not this test.
    for key, appended in (("dir/web seed.bin", quote("web seed.bin")), ("dir/2.bin", "any")):
        data = os.urandom(20_000)
        put(srv, key, data)
        [url] = [u.decode() for u in torrent_of(srv, key)[b"url-list"]]
        assert url.startswith(f"{srv.endpoint}/_webseed/") and url.endswith("/")
        assert raw_get(url + appended) == (200, data)


@pytest.mark.parametrize("key", ["a/../b.bin", "./x/./y.bin", "p/../../q.bin", "z/.."])
def test_dot_segments_survive_url_normalisation(
    fmt_server: tuple[str, LiveServer], key: str
) -> None:
    _, srv = fmt_server
    data = os.urandom(3000) + key.encode()
    put(srv, key, data)
    # A different object where the normalised path of the naive URL would land.
    put(srv, "b.bin", b"not this one")
    t = torrent_of(srv, key)
    [url] = [u.decode() for u in t[b"url-list"]]
    if url.endswith("/"):
        url += quote(t[b"info"][b"name"].decode())
    assert whatwg_normalised(url) == url, url
    assert raw_get(url) == (200, data)
    magnet = http("GET", torrent_url(srv.endpoint, "fixes", key) + "&format=magnet")[2]
    params = dict(parse_qsl(magnet.decode().strip()[len("magnet:?") :]))
    assert whatwg_normalised(params["xs"].partition("?")[0]) == params["xs"].partition("?")[0]


def magnet_xts(srv: LiveServer, key: str, extra: str = "") -> tuple[int, list[str], bytes]:
    status, _, body = http(
        "GET", torrent_url(srv.endpoint, "fixes", key) + "&format=magnet" + extra
    )
    if status != 200:
        return status, [], body
    pairs = parse_qsl(body.decode().strip()[len("magnet:?") :])
    return status, [v for k, v in pairs if k == "xt"], body


def test_default_magnet_is_btih_with_the_torrent_link(fmt_server: tuple[str, LiveServer]) -> None:
    fmt, srv = fmt_server
    put(srv, "m.bin", os.urandom(40_000))
    status, _, raw = http("GET", torrent_url(srv.endpoint, "fixes", "m.bin"))
    info = info_bytes(raw)
    _, xts, body = magnet_xts(srv, "m.bin")
    if fmt == "v2":
        assert xts == ["urn:btmh:1220" + hashlib.sha256(info).hexdigest()]
    else:
        # rtorrent and lftp reject any magnet with a btmh xt.
        assert xts == ["urn:btih:" + hashlib.sha1(info).hexdigest()]
    assert ("xs", torrent_url(srv.endpoint, "fixes", "m.bin")) in parse_qsl(
        body.decode().strip()[len("magnet:?") :]
    )
    status, xts, body = magnet_xts(srv, "m.bin", "&magnet=btmh")
    if fmt == "v1":
        assert status == 400 and error_code(body) == "InvalidArgument"
    else:
        assert status == 200
        assert "urn:btmh:1220" + hashlib.sha256(info).hexdigest() in xts
        assert ("urn:btih:" + hashlib.sha1(info).hexdigest() in xts) == (fmt == "hybrid")
    status, _, body = magnet_xts(srv, "m.bin", "&magnet=sha3")
    assert status == 400 and error_code(body) == "InvalidArgument"


def test_empty_object_has_no_torrent(fmt_server: tuple[str, LiveServer]) -> None:
    _, srv = fmt_server
    put(srv, "empty.txt", b"")
    for extra in ("", "&format=magnet"):
        status, _, body = http("GET", torrent_url(srv.endpoint, "fixes", "empty.txt") + extra)
        assert status == 400, body
        assert error_code(body) == "InvalidRequest"
        assert b"zero-byte object has no torrent" in body
    # The object itself is served as usual.
    assert raw_get(f"{srv.endpoint}/fixes/empty.txt") == (200, b"")


def announce_query(info_hash: bytes) -> str:
    return (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(os.urandom(20))}"
        "&port=51413&uploaded=0&downloaded=0&left=0&compact=1"
    )


def test_announce_path_is_one_libtorrent_accepts_and_buckets_keep_it(
    fmt_server: tuple[str, LiveServer],
) -> None:
    fmt, srv = fmt_server
    put(srv, "t.bin", os.urandom(5000))
    t = torrent_of(srv, "t.bin")
    ours = f"{srv.endpoint}/announce"
    assert t[b"announce"] == ours.encode()
    assert t[b"announce-list"][0][0] == ours.encode()
    info = info_bytes(http("GET", torrent_url(srv.endpoint, "fixes", "t.bin"))[2])
    # The swarm id: the v1 hash, or a v2-only torrent's SHA-256 cut to 20 bytes.
    info_hash = hashlib.sha1(info).digest() if fmt != "v2" else hashlib.sha256(info).digest()[:20]
    status, body = raw_get(f"{ours}?{announce_query(info_hash)}")
    assert status == 200 and b"interval" in body and b"failure" not in body, body
    status, body = raw_get(f"{srv.endpoint}/scrape?info_hash={quote_from_bytes(info_hash)}")
    assert status == 200 and body.startswith(b"d5:filesd20:"), body
    # The old path keeps working for torrents handed out before.
    assert raw_get(f"{srv.endpoint}/_tracker/announce?{announce_query(info_hash)}")[0] == 200
    # Buckets named like the tracker's paths are S3 buckets for every S3 request.
    s3 = make_client(srv.endpoint)
    for name in (f"announce-{fmt}", "announce", "scrape"):
        if name != f"announce-{fmt}" and fmt != "v1":
            continue  # one server per format; the bucket names are per server
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="k", Body=name.encode(), ACL="public-read")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]]
        assert keys == ["k"]
        assert raw_get(f"{srv.endpoint}/{name}/k") == (200, name.encode())
        assert s3.get_object(Bucket=name, Key="k")["Body"].read() == name.encode()
