"""Audit of metering in the field: a bucket name deleted and taken again by another user
within one flush interval, its torrent bytes (seeder and web seed) of both buckets counted
in that interval; and the admin swarm endpoint of such a name."""

from __future__ import annotations

import os
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_admin_api import call
from tests.api.test_metering import fetch, lt_download
from tests.conftest import LiveServer, UserKeys, add_user, make_client, start_server

NAME = "field-reused"
KEY = "disk.img"


@dataclass(frozen=True)
class Generations:
    """What the two buckets of NAME served in one flush interval, per channel."""

    srv: LiveServer
    ben: tuple[str, str]
    first_created: float
    second_created: float
    first: tuple[int, int]  # (web seed bytes, seeder bytes) of root's bucket
    second: tuple[int, int]  # of ben's


def _user(srv: LiveServer, name: str) -> UserKeys:
    keys = add_user(srv, name)
    deadline = time.monotonic() + 10  # the server reloads users within 3 s
    while call(srv, "GET", "/_admin/usage", keys=(keys.access_key, keys.secret_key))[0] != 200:
        assert time.monotonic() < deadline, "the new user was never accepted"
        time.sleep(0.3)
    return keys


def _serve_torrent(srv: LiveServer, s3: Any, data: bytes, dest: Path) -> tuple[int, int]:
    """Create NAME, put KEY public, download its torrent from the web seed alone and then
    from the seeder alone: (web seed bytes, seeder bytes)."""
    s3.create_bucket(Bucket=NAME)
    s3.put_object(Bucket=NAME, Key=KEY, Body=data, ACL="public-read")
    torrent = fetch(f"{srv.endpoint}/{NAME}/{quote(KEY)}?torrent")
    web = lt_download(torrent, dest / "ws", web_seed=True)
    peer = lt_download(torrent, dest / "bt", web_seed=False, peer=("127.0.0.1", srv.peer_port))
    assert web == peer == len(data)
    return web, peer


def _created_at(srv: LiveServer) -> float:
    """The created_at of the bucket that has NAME now, as the metadata store holds it."""
    db = sa.create_engine(f"sqlite:///{srv.data_dir / 'metadata.sqlite3'}")
    try:
        with db.connect() as conn:
            row = conn.execute(
                sa.text("SELECT created_at FROM buckets WHERE name = :n"), {"n": NAME}
            )
            return float(row.scalar_one())
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def generations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generations]:
    """Root's bucket NAME serves its torrent, is deleted, and ben's bucket NAME serves its
    own, all in one flush interval (an hour; the server's shutdown flushes it)."""
    if os.environ.get("S3TORRENT_TEST_METADATA") == "postgres":
        pytest.skip("reads the SQLite metadata file")
    tmp = tmp_path_factory.mktemp("audit-metering-field")
    srv = start_server(tmp, env={"S3TORRENT_METERING__FLUSH_INTERVAL": "3600"})
    try:
        ben = _user(srv, "ben-field")
        ben_keys = (ben.access_key, ben.secret_key)
        root_s3 = make_client(srv.endpoint)
        first = _serve_torrent(srv, root_s3, os.urandom(300_000), tmp / "g1")
        first_created = _created_at(srv)
        root_s3.delete_object(Bucket=NAME, Key=KEY)
        root_s3.delete_bucket(Bucket=NAME)
        ben_s3 = make_client(srv.endpoint, *ben_keys)
        second = _serve_torrent(srv, ben_s3, os.urandom(200_000), tmp / "g2")
        second_created = _created_at(srv)
        assert second_created > first_created
        srv.stop()  # the interval's counts are flushed at shutdown
        srv.start()
        yield Generations(srv, ben_keys, first_created, second_created, first, second)
    finally:
        srv.stop()


def _savings(srv: LiveServer, keys: tuple[str, str] | None) -> dict[str, Any]:
    kw = {} if keys is None else {"keys": keys}
    status, body = call(srv, "GET", f"/_admin/savings?bucket={NAME}", **kw)
    assert status == 200, body
    [item] = [o for o in body["objects"] if o["key"] == KEY]
    return dict(item)


def test_torrent_bytes_of_a_name_taken_again_within_a_flush_go_to_their_own_bucket(
    generations: Generations,
) -> None:
    """Before: the seeder and the web seed recorded by name, and a flush attributed such
    counts to the bucket that had the name if it had it when the first was recorded: the
    earlier bucket's last bytes came first, so every torrent byte of that interval, ben's
    own too, went to no bucket: ben's report showed none of his swarm's origin bytes. Now
    each count carries the bucket of the publication it served."""
    g = generations
    mine = _savings(g.srv, g.ben)
    assert (mine["web_seed_bytes"], mine["seeder_bytes"]) == g.second
    assert mine["web_seed_requests"] >= 1 and mine["seeder_requests"] >= 1
    everything = _savings(g.srv, None)  # root: the name's whole history, each byte once
    assert everything["web_seed_bytes"] == g.first[0] + g.second[0]
    assert everything["seeder_bytes"] == g.first[1] + g.second[1]

    db = sa.create_engine(f"sqlite:///{g.srv.data_dir / 'metadata.sqlite3'}")
    try:
        with db.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT bucket_created, operation, bytes_out FROM usage_objects"
                    " WHERE bucket = :n AND operation LIKE 'GetObject-%'"
                ),
                {"n": NAME},
            )
            by_generation = {(float(c), op): int(b) for c, op, b in rows}
    finally:
        db.dispose()
    # The earlier bucket's bytes are its own too (root's records), not no bucket's.
    assert by_generation == {
        (g.first_created, "GetObject-WebSeed"): g.first[0],
        (g.first_created, "GetObject-BitTorrent"): g.first[1],
        (g.second_created, "GetObject-WebSeed"): g.second[0],
        (g.second_created, "GetObject-BitTorrent"): g.second[1],
    }


def test_the_swarm_endpoint_shows_the_bucket_that_has_the_name(generations: Generations) -> None:
    """Before: the admin swarm endpoint added up the metered bytes of every bucket the name
    had, so the console showed ben's object with root's earlier object's origin bytes, unlike
    every usage report of the bucket. Now its counts are the current bucket's, and the name's
    history is apart (`name_history`)."""
    g = generations
    status, doc = call(g.srv, "GET", f"/_admin/torrent/swarm?bucket={NAME}&key={quote(KEY)}")
    assert status == 200, doc
    mine = _savings(g.srv, g.ben)
    assert doc["origin_bytes"] == sum(g.second) == mine["origin_bytes"]
    assert doc["peer_bytes"] == mine["offloaded_bytes"]
    assert doc["name_history"]["origin_bytes"] == sum(g.first) + sum(g.second)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = start_server(tmp_path_factory.mktemp("audit-metering-field-plain"))
    yield s
    s.stop()


def _usage(
    srv: LiveServer, bucket: str, keys: tuple[str, str] | None
) -> dict[tuple[str, str], float]:
    kw = {} if keys is None else {"keys": keys}
    status, body = call(srv, "GET", f"/_admin/usage?bucket={bucket}&by=hour", **kw)
    assert status == 200, body
    out: dict[tuple[str, str], float] = {}
    for r in body["rows"]:
        k = (r["Operation"], r["UsageType"])
        out[k] = out.get(k, 0) + r["UsageValue"]
    return out


def test_access_denied_to_others_is_not_billed_to_the_owner(plain: LiveServer) -> None:
    """S3 bills a bucket owner no AccessDenied (403) of a request from outside the owner's
    account, nor any 5XX answer (Billing for Amazon S3 error responses). Before: every 403
    an anonymous caller or another user got on a private bucket was in its owner's report
    (a request and its error body's bytes): anyone could inflate a private bucket's usage
    without bounds. Now such requests are counted apart from the bucket (root and admins
    still see them under its name); the owner's own requests, errors included, are billed."""
    carol = _user(plain, "carol-field")
    dave = _user(plain, "dave-field")
    c_keys, d_keys = (carol.access_key, carol.secret_key), (dave.access_key, dave.secret_key)
    bucket = "private-field"
    c_s3 = make_client(plain.endpoint, *c_keys)
    c_s3.create_bucket(Bucket=bucket)
    c_s3.put_object(Bucket=bucket, Key="secret", Body=b"x" * 100)
    url = f"{plain.endpoint}/{bucket}/secret"
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(url)
        assert err.value.code == 403
    d_s3 = make_client(plain.endpoint, *d_keys)
    for _ in range(2):
        with pytest.raises(ClientError) as denied:
            d_s3.get_object(Bucket=bucket, Key="secret")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        c_s3.get_object(Bucket=bucket, Key="missing")  # her own 404: billed, as S3 does
    assert c_s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"x" * 100

    def everything() -> float:
        return _usage(plain, bucket, None).get(("GetObject", "Requests-Tier2"), 0)

    deadline = time.monotonic() + 15
    while everything() < 7:
        assert time.monotonic() < deadline, _usage(plain, bucket, None)
        time.sleep(0.3)
    assert everything() == 7  # root: every request on the name
    mine = _usage(plain, bucket, c_keys)
    assert mine[("GetObject", "Requests-Tier2")] == 2
    assert mine[("GetObject", "DataTransfer-Out-Bytes")] < 100 + 1000  # her 404's body too


def test_web_seed_refusals_are_not_billed_as_pieces(plain: LiveServer) -> None:
    """The web seed refuses (503, Retry-After) a range whose first piece the swarm has
    already. Before: each refusal was in the owner's report as a GetObject-WebSeed request,
    so any client could inflate it at no cost to the origin; S3 bills no 5XX answer. Now
    only the answers that carried pieces are the owner's (root still sees every request)."""
    from tests.api.test_webseed_refusal import _get

    erin = _user(plain, "erin-field")
    e_keys = (erin.access_key, erin.secret_key)
    bucket = "webseed-field"
    e_s3 = make_client(plain.endpoint, *e_keys)
    e_s3.create_bucket(Bucket=bucket)
    data = os.urandom(1 << 20)
    e_s3.put_object(Bucket=bucket, Key="w.bin", Body=data, ACL="public-read")
    meta = bdecode(fetch(f"{plain.endpoint}/{bucket}/w.bin?torrent"))
    [url] = [u.decode() for u in meta[b"url-list"]]
    piece = int(meta[b"info"][b"piece length"])
    assert _get(url, 0, piece - 1) == (206, data[:piece])
    for _ in range(3):
        assert _get(url, 0, piece - 1)[0] == 503

    def everything() -> float:
        return _usage(plain, bucket, None).get(("GetObject-WebSeed", "Requests-Tier2"), 0)

    deadline = time.monotonic() + 15
    while everything() < 4:
        assert time.monotonic() < deadline, _usage(plain, bucket, None)
        time.sleep(0.3)
    assert everything() == 4
    mine = _usage(plain, bucket, e_keys)
    assert mine[("GetObject-WebSeed", "Requests-Tier2")] == 1
    assert mine[("GetObject-WebSeed", "DataTransfer-Out-Bytes")] == piece
