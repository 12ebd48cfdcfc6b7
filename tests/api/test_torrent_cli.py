"""`s3torrent torrent show` and `s3torrent torrent rehash` against a server's data dir."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from s3torrent.cli import cli
from tests.conftest import LiveServer, make_client, sign_request, start_server


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def torrent_url(srv: LiveServer, bucket: str, key: str) -> str:
    return f"{srv.endpoint}/{bucket}/{quote(key, safe='/')}?torrent"


def run_cli(srv: LiveServer, *args: str) -> tuple[int, str, str]:
    """The CLI in-process (no interpreter start-up) on the server's data dir."""
    # Same metadata database as the server (SQLite in its data dir, or its PostgreSQL URL);
    # the other settings are the CLI's own, as for an operator running it by hand.
    env = {k: v for k, v in srv.env.items() if k == "S3TORRENT_METADATA_URL"}
    res = CliRunner(env=env).invoke(cli, ["--data-dir", str(srv.data_dir), *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


def show(srv: LiveServer, bucket: str, key: str, *, subprocess: bool = False) -> dict[str, str]:
    args = ("torrent", "show", bucket, key, "--base-url", srv.endpoint)
    if subprocess:
        proc = srv.cli(*args)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        code, stdout, stderr = run_cli(srv, *args)
    assert code == 0, stdout + stderr
    fields = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition(": ")
        assert sep, line
        fields[name] = value
    return fields


def check_v1(torrent: bytes, data: bytes) -> None:
    info = bdecode(torrent)[b"info"]
    pl = info[b"piece length"]
    assert info[b"length"] == len(data)
    assert info[b"pieces"] == b"".join(
        hashlib.sha1(data[i : i + pl]).digest() for i in range(0, len(data), pl)
    )


def test_show_ready_matches_what_the_server_serves(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    data = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="docs/show.bin", Body=data, ACL="public-read")
    status, torrent = fetch(torrent_url(server, bucket, "docs/show.bin"))
    assert status == 200
    status, magnet = fetch(torrent_url(server, bucket, "docs/show.bin") + "&format=magnet")
    assert status == 200
    info = bdecode(torrent)[b"info"]

    f = show(server, bucket, "docs/show.bin", subprocess=True)  # the real entry point
    assert f["state"] == "ready"
    assert f["size"] == str(len(data))
    assert f["info-hash v1"] == hashlib.sha1(bencode(info)).hexdigest()
    assert "info-hash v2" not in f  # the session server makes v1 torrents
    assert f["piece length"] == str(info[b"piece length"])
    assert f["piece count"] == str(len(info[b"pieces"]) // 20)
    assert f["version"] == info[b"x-s3torrent-version"].decode()
    assert f["magnet"] == magnet.decode().strip()


def test_show_not_public_and_missing(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private.bin", Body=b"secret")
    assert show(server, bucket, "private.bin")["state"] == "not public"
    code, _, stderr = run_cli(server, "torrent", "show", bucket, "no-such-key")
    assert code != 0
    assert "no such object" in stderr


def test_rehash_objects_stored_while_torrents_were_disabled(tmp_path: Path) -> None:
    srv = start_server(tmp_path, env={"S3TORRENT_TORRENT__ENABLED": "false"})
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="first")
        s3.create_bucket(Bucket="second")
        objects = {
            ("first", "a.bin"): os.urandom(1),
            ("first", "dir/b.bin"): os.urandom(3 * 16384 + 17),
            ("first", "c.bin"): os.urandom(1_000_000),
            ("second", "d.bin"): os.urandom(50_000),
        }
        for (b, k), data in objects.items():
            s3.put_object(Bucket=b, Key=k, Body=data, ACL="public-read")
        s3.put_object(Bucket="first", Key="private.bin", Body=b"not public")
        for b, k in [("first", "dir/b.bin"), ("second", "d.bin")]:
            f = show(srv, b, k)
            assert f["state"] == "pending"
            assert "magnet" not in f and "info-hash v1" not in f

        # While the server runs (SQLite WAL): only the first bucket.
        code, stdout, stderr = run_cli(srv, "torrent", "rehash", "--bucket", "first")
        assert code == 0, stderr
        # b and c: a and the private one are inline, hashed from their rows when first
        # asked for (HashJobs.ensure), so nothing queues them.
        assert "rehashed 2 objects" in stdout
        assert "100%" in stderr  # the tqdm progress bar
        assert show(srv, "second", "d.bin")["state"] == "pending"

        code, stdout, stderr = run_cli(srv, "torrent", "rehash")
        assert code == 0, stderr
        assert "rehashed 1 objects" in stdout
        code, stdout, stderr = run_cli(srv, "torrent", "rehash")
        assert code == 0, stderr
        assert "rehashed 0 objects" in stdout
        code, _, stderr = run_cli(srv, "torrent", "rehash", "--bucket", "nope")
        assert code != 0 and "no such bucket" in stderr
        shown = {(b, k): show(srv, b, k) for b, k in objects}
    finally:
        srv.stop()

    # The same data dir (and metadata database) with torrents enabled serves what the CLI
    # computed.
    same_db = {k: v for k, v in srv.env.items() if k == "S3TORRENT_METADATA_URL"}
    srv = start_server(tmp_path, env=same_db)
    try:
        for (b, k), data in objects.items():
            status, torrent = fetch(torrent_url(srv, b, k))
            assert status == 200, torrent
            check_v1(torrent, data)
            info = bdecode(torrent)[b"info"]
            assert shown[(b, k)]["info-hash v1"] == hashlib.sha1(bencode(info)).hexdigest()
            assert shown[(b, k)]["state"] == "ready"
    finally:
        srv.stop()


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sse-s3"])
def test_show_a_small_object_whose_torrent_nobody_asked_for(
    server: LiveServer, s3: Any, bucket: str, sealed: bool
) -> None:
    # A small object's write stores no hashes; show hashes it from its row (opening it
    # when it is encrypted), as its first ?torrent will.
    data = os.urandom(20_000)
    extra = {"ServerSideEncryption": "AES256"} if sealed else {}
    s3.put_object(Bucket=bucket, Key="small.bin", Body=data, ACL="public-read", **extra)
    f = show(server, bucket, "small.bin")
    assert f["state"] == "ready"
    url = f"{server.endpoint}/_admin/torrent?bucket={bucket}&key=small.bin"
    request = urllib.request.Request(url, headers=sign_request("GET", url))
    with urllib.request.urlopen(request, timeout=10) as r:
        report = json.loads(r.read())
    assert report["state"] == "ready"

    status, torrent = fetch(torrent_url(server, bucket, "small.bin"))
    assert status == 200
    check_v1(torrent, data)
    info_hash = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).hexdigest()
    assert f["info-hash v1"] == info_hash
    assert report["info_hash_v1"] == info_hash
