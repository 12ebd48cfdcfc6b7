"""kill -9 of every process of `serve --workers 2` right after an acknowledged write, and in
the middle of uploads.

After each kill the server starts again and must hold every acknowledged state: objects and
their bytes, versions, tags, ACLs, policies, retention and legal holds, versioning; and the
`?torrent` of an object must describe the stored bytes (its v1 piece hashes are checked
against them, and libtorrent downloads one through the web seed). A kill during an upload
must leave nothing partial visible, and nothing that stops later writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client, sign_request, start_server
from tests.seeding import fetch_torrent, lt_download, public_read_policy, wait_for

MIB = 1024 * 1024


def crash_and_restart(srv: LiveServer) -> Any:
    srv.kill9()
    srv.start()
    return make_client(srv.endpoint, max_pool_connections=8)


def body_of(s3: Any, bucket: str, key: str, **kw: Any) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read())


def check_torrent(srv: LiveServer, bucket: str, key: str, data: bytes) -> bytes:
    """The object's `?torrent` describes `data`: its length and every v1 piece hash."""
    torrent = fetch_torrent(srv.endpoint, bucket, key)
    info = bdecode(torrent)[b"info"]
    assert info[b"length"] == len(data)
    size = info[b"piece length"]
    pieces = info[b"pieces"]
    assert len(pieces) == 20 * -(-len(data) // size)
    for i in range(0, len(data), size):
        n = i // size
        assert hashlib.sha1(data[i : i + size]).digest() == pieces[20 * n : 20 * n + 20], n
    return torrent


def test_every_kind_of_acknowledged_write_survives_kill9(tmp_path: Path) -> None:
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="dur")
        s3.put_bucket_policy(Bucket="dur", Policy=public_read_policy("dur"))
        s3 = crash_and_restart(srv)
        assert json.loads(s3.get_bucket_policy(Bucket="dur")["Policy"])["Statement"]

        data = os.urandom(3 * MIB + 17)
        s3.put_object(Bucket="dur", Key="put", Body=data)
        s3 = crash_and_restart(srv)
        assert body_of(s3, "dur", "put") == data
        check_torrent(srv, "dur", "put", data)

        parts = [os.urandom(5 * MIB), os.urandom(MIB + 3)]
        up = s3.create_multipart_upload(Bucket="dur", Key="mp")["UploadId"]
        listed = [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(Bucket="dur", Key="mp", UploadId=up, PartNumber=n, Body=b)[
                    "ETag"
                ],
            }
            for n, b in enumerate(parts, 1)
        ]
        done = s3.complete_multipart_upload(
            Bucket="dur", Key="mp", UploadId=up, MultipartUpload={"Parts": listed}
        )
        s3 = crash_and_restart(srv)
        joined = b"".join(parts)
        assert body_of(s3, "dur", "mp") == joined
        assert s3.head_object(Bucket="dur", Key="mp")["ETag"] == done["ETag"]
        assert not s3.list_multipart_uploads(Bucket="dur").get("Uploads")
        torrent = check_torrent(srv, "dur", "mp", joined)
        got = lt_download(torrent, tmp_path / "lt", timeout=90)
        assert got.read_bytes() == joined

        s3.copy_object(Bucket="dur", Key="copy", CopySource={"Bucket": "dur", "Key": "put"})
        s3 = crash_and_restart(srv)
        assert body_of(s3, "dur", "copy") == data
        check_torrent(srv, "dur", "copy", data)

        s3.put_object_tagging(
            Bucket="dur", Key="put", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
        )
        s3.put_object_acl(Bucket="dur", Key="copy", ACL="public-read")
        s3 = crash_and_restart(srv)
        assert s3.get_object_tagging(Bucket="dur", Key="put")["TagSet"] == [
            {"Key": "k", "Value": "v"}
        ]
        grants = s3.get_object_acl(Bucket="dur", Key="copy")["Grants"]
        assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)

        s3.delete_object(Bucket="dur", Key="copy")
        s3.delete_objects(Bucket="dur", Delete={"Objects": [{"Key": "put"}]})
        s3 = crash_and_restart(srv)
        for key in ("copy", "put"):
            with pytest.raises(ClientError):
                s3.head_object(Bucket="dur", Key=key)

        s3.create_bucket(Bucket="ver")
        s3.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled"})
        s3 = crash_and_restart(srv)
        assert s3.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled"
        v1 = s3.put_object(Bucket="ver", Key="k", Body=b"one")["VersionId"]
        v2 = s3.put_object(Bucket="ver", Key="k", Body=b"two")["VersionId"]
        marker = s3.delete_object(Bucket="ver", Key="k")["VersionId"]
        s3 = crash_and_restart(srv)
        listing = s3.list_object_versions(Bucket="ver")
        assert {v["VersionId"] for v in listing["Versions"]} == {v1, v2}
        assert [m["VersionId"] for m in listing["DeleteMarkers"]] == [marker]
        assert body_of(s3, "ver", "k", VersionId=v1) == b"one"

        s3.create_bucket(Bucket="lck", ObjectLockEnabledForBucket=True)
        vid = s3.put_object(Bucket="lck", Key="k", Body=b"locked")["VersionId"]
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(microsecond=0)
        s3.put_object_retention(
            Bucket="lck",
            Key="k",
            VersionId=vid,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
        )
        s3.put_object_legal_hold(Bucket="lck", Key="k", VersionId=vid, LegalHold={"Status": "ON"})
        s3 = crash_and_restart(srv)
        kept = s3.get_object_retention(Bucket="lck", Key="k", VersionId=vid)["Retention"]
        assert kept["Mode"] == "GOVERNANCE" and kept["RetainUntilDate"] == until
        hold = s3.get_object_legal_hold(Bucket="lck", Key="k", VersionId=vid)["LegalHold"]
        assert hold["Status"] == "ON"
        with pytest.raises(ClientError):
            s3.delete_object(Bucket="lck", Key="k", VersionId=vid)
    finally:
        srv.stop()


def _stored_blobs(srv: LiveServer) -> tuple[set[str], set[str]]:
    """(blob files, blob ids some row references) of a stopped server's data directory."""
    db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
    try:
        rows = {
            r[0] for r in db.execute("SELECT version_id FROM objects WHERE inline_data IS NULL")
        }
        rows |= {
            r[0]
            for r in db.execute(
                "SELECT version_id FROM object_versions"
                " WHERE inline_data IS NULL AND NOT delete_marker"
            )
        }
        rows |= {r[0] for r in db.execute("SELECT blob_id FROM parts")}
    finally:
        db.close()
    files = {p.name for p in (srv.data_dir / "blobs").rglob("*") if p.is_file()}
    return files, rows


def _background(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as exc:  # the kill cuts it
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, out


@pytest.mark.timeout(400)
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.4])
def test_kill9_in_the_middle_of_uploads_leaves_nothing_partial(
    tmp_path: Path, delay: float
) -> None:
    """A slow large PUT over an object, and a CompleteMultipartUpload, cut by kill -9 at
    `delay` after the completion was sent: after the restart each key holds whole bytes
    (the old or the new), the upload can still be completed if it was not, every blob file
    has its row and no temporary file is left."""
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint, max_pool_connections=8)
        s3.create_bucket(Bucket="mid")
        s3.put_bucket_policy(Bucket="mid", Policy=public_read_policy("mid"))
        old = os.urandom(2 * MIB)
        s3.put_object(Bucket="mid", Key="big", Body=old)
        parts = [os.urandom(5 * MIB) for _ in range(6)]
        up = s3.create_multipart_upload(Bucket="mid", Key="mp")["UploadId"]
        listed = [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(Bucket="mid", Key="mp", UploadId=up, PartNumber=n, Body=b)[
                    "ETag"
                ],
            }
            for n, b in enumerate(parts, 1)
        ]
        new = os.urandom(24 * MIB)

        def slow_body() -> Any:
            for i in range(0, len(new), MIB):
                yield new[i : i + MIB]
                time.sleep(0.03)

        def put_big() -> Any:
            url = f"{srv.endpoint}/mid/big"
            headers = sign_request(
                "PUT",
                url,
                headers={"Content-Length": str(len(new))},
                payload_hash="UNSIGNED-PAYLOAD",
            )
            req = urllib.request.Request(url, data=slow_body(), headers=headers, method="PUT")
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status

        put_thread, _ = _background(put_big)
        wait_for(lambda: any((srv.data_dir / "tmp").iterdir()), "the PUT under way", 30)
        c2 = make_client(srv.endpoint, read_timeout=60)
        done_thread, done_out = _background(
            lambda: c2.complete_multipart_upload(
                Bucket="mid", Key="mp", UploadId=up, MultipartUpload={"Parts": listed}
            )
        )
        time.sleep(delay)
        srv.kill9()
        put_thread.join(60)
        done_thread.join(60)
        srv.start()
        s3 = make_client(srv.endpoint, max_pool_connections=8)
        # The start-up clean-up took what the kill left: no temporary file, no blob without
        # a row, no row without its blob.
        assert not list((srv.data_dir / "tmp").iterdir())
        files, referenced = _stored_blobs(srv)
        assert files == referenced, (files - referenced, referenced - files)

        got = body_of(s3, "mid", "big")
        assert got in (old, new), len(got)
        check_torrent(srv, "mid", "big", got)
        completed = bool(done_out) and isinstance(done_out[0], dict)
        if completed:
            assert body_of(s3, "mid", "mp") == b"".join(parts)
        # The client retries a completion it got no answer to; one that committed before the
        # kill answers as it would have (its receipt), one that did not completes now.
        retried = s3.complete_multipart_upload(
            Bucket="mid", Key="mp", UploadId=up, MultipartUpload={"Parts": listed}
        )
        if completed:
            assert retried["ETag"] == done_out[0]["ETag"]
        whole = body_of(s3, "mid", "mp")
        assert whole == b"".join(parts)
        check_torrent(srv, "mid", "mp", whole)
        assert not s3.list_multipart_uploads(Bucket="mid").get("Uploads")

        # Later writes work.
        s3.put_object(Bucket="mid", Key="big", Body=b"after")
        assert body_of(s3, "mid", "big") == b"after"
    finally:
        srv.stop()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_during_concurrent_multipart_uploads_keeps_every_completion(
    tmp_path: Path, seed: int
) -> None:
    """Four clients run whole multipart uploads (create, parts, complete) into shared keys
    of a versioned bucket while every process is killed at a random moment. After the
    restart every acknowledged completion is a version holding exactly its parts' bytes,
    every other version is whole too (no mix of two uploads' parts), every upload left
    in progress can still be completed, and no blob is left without its row."""
    import random

    rng = random.Random(seed * 31 + int(time.time()))
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="mpk")
        s3.put_bucket_versioning(Bucket="mpk", VersioningConfiguration={"Status": "Enabled"})
        pool = os.urandom(8 * MIB)
        acked: dict[str, bytes] = {}  # version id -> bytes
        sent: dict[str, tuple[str, list[Any], bytes]] = {}  # upload id -> (key, parts, bytes)
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            c = make_client(srv.endpoint, connect_timeout=5, read_timeout=30)
            r = random.Random(seed * 100 + n)
            while not stop.is_set():
                key = f"k{r.randrange(3)}"
                try:
                    up = c.create_multipart_upload(Bucket="mpk", Key=key)["UploadId"]
                    a = r.randrange(0, 3 * MIB)
                    bodies = [pool[a : a + 5 * MIB], f"{n}:{up}".encode() * r.randrange(1, 999)]
                    listed = []
                    for i, b in enumerate(bodies, 1):
                        e = c.upload_part(Bucket="mpk", Key=key, UploadId=up, PartNumber=i, Body=b)
                        listed.append({"PartNumber": i, "ETag": e["ETag"]})
                    with lock:
                        sent[up] = (key, listed, b"".join(bodies))
                    done = c.complete_multipart_upload(
                        Bucket="mpk", Key=key, UploadId=up, MultipartUpload={"Parts": listed}
                    )
                except Exception:
                    if stop.is_set():
                        return
                    continue
                with lock:
                    acked[done["VersionId"]] = b"".join(bodies)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 2, "two completions", 60)
        time.sleep(rng.uniform(0, 1.5))
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(60)
        srv.start()
        s3 = make_client(srv.endpoint)
        assert not list((srv.data_dir / "tmp").iterdir())
        files, referenced = _stored_blobs(srv)
        assert files == referenced, (files - referenced, referenced - files)

        versions = s3.list_object_versions(Bucket="mpk").get("Versions", [])
        stored = {v["VersionId"]: v["Key"] for v in versions}
        assert set(acked) <= set(stored), "an acknowledged completion was lost"
        whole = {body for _, _, body in sent.values()}
        for vid, key in stored.items():
            got = body_of(s3, "mpk", key, VersionId=vid)
            assert got in whole, f"version {vid} of {key} is no upload's bytes"
            if vid in acked:
                assert got == acked[vid]
        for left in s3.list_multipart_uploads(Bucket="mpk").get("Uploads", []):
            key, listed, body = sent.get(left["UploadId"], (None, None, None))
            if key is None:
                continue  # created, parts not all acknowledged
            done = s3.complete_multipart_upload(
                Bucket="mpk", Key=key, UploadId=left["UploadId"], MultipartUpload={"Parts": listed}
            )
            assert body_of(s3, "mpk", key, VersionId=done["VersionId"]) == body
    finally:
        srv.stop()
