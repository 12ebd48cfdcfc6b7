"""Small objects' torrents, made from their row when first asked for.

A write of a small object (at most `storage.inline_max_size`, its bytes in its metadata row)
is not hashed and stores no torrents row: the row, its swarm-id index entries, the info
dictionary and the publication were most of what a torrent cost such a write. Its first
`?torrent` hashes it from its row in microseconds and records the hashes before answering,
so the swarm ids in the torrent it hands out resolve for the tracker, the seeder and the
web seed. These tests hold the promises that must survive that: real clients download
small objects made public at their write, by their ACL later, or by a bucket policy, from
our tracker and seeder (plaintext and SSE-S3); a private object's torrent cannot be asked
into existence by anyone; a restart queues no hashing job for small objects.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.seeding import (
    aria2_download,
    fetch_torrent,
    lt_download,
    public_read_policy,
    sha256,
    without_web_seed,
)

pytestmark = pytest.mark.timeout(240)

SIZE = 20_000  # inline (32 KiB), two 16 KiB pieces


def _rows(srv: LiveServer, table: str, version_id: str) -> int:
    db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
    try:
        (n,) = db.execute(
            f"SELECT count(*) FROM {table} WHERE version_id = ?",
            (version_id,),
        ).fetchone()
    finally:
        db.close()
    return int(n)


def _version(srv: LiveServer, bucket: str, key: str) -> str:
    db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
    try:
        row = db.execute(
            "SELECT version_id, inline_data IS NOT NULL FROM objects WHERE bucket = ? AND key = ?",
            (bucket, key.encode()),
        ).fetchone()
    finally:
        db.close()
    assert row is not None and row[1] == 1, "an inline object"
    return str(row[0])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _check_pieces(torrent: bytes, data: bytes) -> None:
    info = bdecode(torrent)[b"info"]
    length = info[b"piece length"]
    expected = b"".join(
        hashlib.sha1(data[i : i + length]).digest() for i in range(0, len(data), length)
    )
    assert info[b"pieces"] == expected


def _first_torrent_downloads(
    srv: LiveServer, bucket: str, key: str, data: bytes, into: Path
) -> bytes:
    """The object's first ?torrent records its hashes before it answers; libtorrent then
    downloads it from our tracker and seeder alone (no web seed), every byte checked."""
    vid = _version(srv, bucket, key)
    assert _rows(srv, "torrents", vid) == 0, "a small write stores no torrent"
    torrent = fetch_torrent(srv.endpoint, bucket, key)
    assert _rows(srv, "torrents", vid) == 1, "recorded before the torrent was answered"
    _check_pieces(torrent, data)
    path = lt_download(without_web_seed(torrent), into)
    assert sha256(path.read_bytes()) == sha256(data)
    return torrent


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sse-s3"])
def test_a_private_small_object_made_public_by_its_acl_downloads(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path, sealed: bool
) -> None:
    data = os.urandom(SIZE)
    extra = {"ServerSideEncryption": "AES256"} if sealed else {}
    s3.put_object(Bucket=bucket, Key="small.bin", Body=data, **extra)
    vid = _version(server, bucket, "small.bin")
    assert _rows(server, "torrents", vid) == 0, "a small write stores no torrent"
    assert _rows(server, "hash_jobs", vid) == 0

    # Nobody can ask a private object's torrent into existence: not anonymously, not its
    # owner (who is told it has no public torrent).
    url = f"{server.endpoint}/{bucket}/small.bin?torrent"
    assert _status(url) == 403
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object_torrent(Bucket=bucket, Key="small.bin")
    assert _rows(server, "torrents", vid) == 0

    # Public by its ACL: still nothing until its torrent is asked for.
    s3.put_object_acl(Bucket=bucket, Key="small.bin", ACL="public-read")
    time.sleep(0.3)
    assert _rows(server, "torrents", vid) == 0
    _first_torrent_downloads(server, bucket, "small.bin", data, tmp_path / "dl")


def test_a_small_public_write_downloads_from_the_seeder(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    s3.put_object(Bucket=bucket, Key="public.bin", Body=data, ACL="public-read")
    torrent = _first_torrent_downloads(server, bucket, "public.bin", data, tmp_path / "dl")
    # Overwritten: the old version's torrent is revoked, the new one is made afresh.
    fresh = os.urandom(SIZE)
    s3.put_object(Bucket=bucket, Key="public.bin", Body=fresh, ACL="public-read")
    again = _first_torrent_downloads(server, bucket, "public.bin", fresh, tmp_path / "dl2")
    assert again != torrent


def test_a_small_object_made_public_by_a_policy_downloads_with_aria2(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    s3.put_object(Bucket=bucket, Key="policy.bin", Body=data)
    vid = _version(server, bucket, "policy.bin")
    assert _rows(server, "torrents", vid) == 0
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))
    # The first ?torrent hashes it and records its swarm ids before answering, so the
    # tracker and the seeder resolve the swarm the client names.
    torrent = fetch_torrent(server.endpoint, bucket, "policy.bin")
    assert _rows(server, "torrents", vid) == 1
    _check_pieces(torrent, data)
    (tmp_path / "t.torrent").write_bytes(without_web_seed(torrent))
    aria2_download(
        tmp_path / "t.torrent", tmp_path / "out", "policy.bin", data, tmp_path, free_port()
    )
    # Asked again: the same torrent, from the recorded row.
    assert fetch_torrent(server.endpoint, bucket, "policy.bin") == torrent


def test_a_restart_queues_no_job_for_small_objects_and_they_stay_torrentable(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path, env={"S3TORRENT_TORRENT__FORMAT": "hybrid"})
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="small")
        blobs = {f"k{i}": os.urandom(1000 + i * 997) for i in range(20)}
        for key, body in blobs.items():
            s3.put_object(Bucket="small", Key=key, Body=body)
        vids = {key: _version(srv, "small", key) for key in blobs}
        srv.stop()
        srv.start()
        time.sleep(0.5)  # the start's resume() has run by the time it answers; a margin
        for vid in vids.values():
            assert _rows(srv, "torrents", vid) == 0
            assert _rows(srv, "hash_jobs", vid) == 0
        s3.put_bucket_policy(Bucket="small", Policy=public_read_policy("small"))
        torrent = fetch_torrent(srv.endpoint, "small", "k7")
        info = bdecode(torrent)[b"info"]
        assert info[b"meta version"] == 2 and b"pieces" in info  # hybrid, as configured
        _check_pieces(torrent, blobs["k7"])
        path = lt_download(without_web_seed(torrent), tmp_path / "dl")
        assert sha256(path.read_bytes()) == sha256(blobs["k7"])
    finally:
        srv.stop()
