"""kill -9 at the crash points the other fault tests do not reach.

Each test starts one operation (or a stream of them) in the background, kills every server
process at a random moment of it, starts the server again and checks the invariants: what
was acknowledged reads back byte for byte with its ETag and metadata; every listed object
or version reads back whole; an upload left in progress is listable and completable; every
blob a row names is on disk and every blob on disk is named by a row.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, make_client, start_server
from tests.fault.test_audit_crash import _stored_blobs, body_of, check_torrent
from tests.seeding import public_read_policy

MIB = 1024 * 1024


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


def _kill_amid(srv: LiveServer, call: Callable[[], Any], delay: float) -> Any:
    """Run `call` in the background, kill -9 every process `delay` s later, restart; the
    call's answer (or the exception the kill gave it)."""
    thread, out = _background(call)
    time.sleep(delay)
    srv.kill9()
    thread.join(60)
    assert not thread.is_alive()
    srv.start()
    return out[0] if out else None


def _no_strays(srv: LiveServer) -> None:
    assert not list((srv.data_dir / "tmp").iterdir())
    files, referenced = _stored_blobs(srv)
    assert files == referenced, (files - referenced, referenced - files)


def _every_version_reads_back(s3: Any, bucket: str) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket}
    while True:
        page = s3.list_object_versions(**kwargs)
        versions += page.get("Versions", [])
        if not page["IsTruncated"]:
            break
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
    seen = [(v["Key"], v["VersionId"]) for v in versions]
    assert len(seen) == len(set(seen)), "a version is listed twice"
    for v in versions:
        got = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        assert got["ContentLength"] == v["Size"]
        assert len(got["Body"].read()) == v["Size"]
    return versions


@pytest.mark.timeout(400)
@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_kill9_during_a_large_copy_onto_itself_with_new_metadata(
    tmp_path: Path, versioned: bool
) -> None:
    """CopyObject of a 24 MiB object onto itself with the metadata replaced, killed at
    random moments: the key holds the old bytes and metadata or the same bytes with the
    new metadata, never a mix; its ETag is the bytes' MD5; its torrent describes them."""
    rng = random.Random(int(time.time()))
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="cpy")
        s3.put_bucket_policy(Bucket="cpy", Policy=public_read_policy("cpy"))
        if versioned:
            s3.put_bucket_versioning(Bucket="cpy", VersioningConfiguration={"Status": "Enabled"})
        data = os.urandom(24 * MIB)
        first = s3.put_object(Bucket="cpy", Key="big", Body=data, Metadata={"round": "0"})
        md5 = hashlib.md5(data).hexdigest()
        assert first["ETag"].strip('"') == md5
        acked = {"0"}
        for n in range(1, 5):
            c = make_client(srv.endpoint, read_timeout=60)
            answer = _kill_amid(
                srv,
                lambda c=c, n=n: c.copy_object(
                    Bucket="cpy",
                    Key="big",
                    CopySource={"Bucket": "cpy", "Key": "big"},
                    MetadataDirective="REPLACE",
                    Metadata={"round": str(n)},
                    ContentType="application/x-round",
                ),
                rng.uniform(0.0, 0.6),
            )
            if isinstance(answer, dict):
                acked.add(str(n))
            s3 = make_client(srv.endpoint)
            _no_strays(srv)
            head = s3.head_object(Bucket="cpy", Key="big")
            assert head["ETag"].strip('"') == md5
            got = head["Metadata"]["round"]
            assert int(got) <= n
            if got != "0":
                assert head["ContentType"] == "application/x-round"
            # The newest acknowledged round (or a later one that landed unacknowledged).
            assert int(got) >= max(int(a) for a in acked)
            assert body_of(s3, "cpy", "big") == data
            check_torrent(srv, "cpy", "big", data)
            if versioned:
                versions = _every_version_reads_back(s3, "cpy")
                assert first["VersionId"] in {v["VersionId"] for v in versions}
    finally:
        srv.stop()


@pytest.mark.timeout(400)
def test_kill9_during_upload_part_copy_leaves_a_completable_upload(tmp_path: Path) -> None:
    """UploadPartCopy of 8 MiB ranges of a large object, killed at random moments: after
    each restart the upload is listed, every listed part holds its range (its ETag is the
    range's MD5), and the upload completes into exactly the ranges."""
    rng = random.Random(int(time.time()) + 1)
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="pcp")
        data = os.urandom(32 * MIB)
        s3.put_object(Bucket="pcp", Key="src", Body=data)
        up = s3.create_multipart_upload(Bucket="pcp", Key="dst")["UploadId"]
        span = 8 * MIB
        ranges = {n: data[(n - 1) * span : n * span] for n in range(1, 5)}
        for n in ranges:
            c = make_client(srv.endpoint, read_timeout=60)
            _kill_amid(
                srv,
                lambda c=c, n=n: c.upload_part_copy(
                    Bucket="pcp",
                    Key="dst",
                    UploadId=up,
                    PartNumber=n,
                    CopySource={"Bucket": "pcp", "Key": "src"},
                    CopySourceRange=f"bytes={(n - 1) * span}-{n * span - 1}",
                ),
                rng.uniform(0.0, 0.4),
            )
            s3 = make_client(srv.endpoint)
            _no_strays(srv)
            uploads = s3.list_multipart_uploads(Bucket="pcp").get("Uploads", [])
            assert [u["UploadId"] for u in uploads] == [up]
            for p in s3.list_parts(Bucket="pcp", Key="dst", UploadId=up).get("Parts", []):
                want = ranges[p["PartNumber"]]
                assert p["Size"] == len(want)
                assert p["ETag"].strip('"') == hashlib.md5(want).hexdigest()
        listed = {
            p["PartNumber"]: p["ETag"]
            for p in s3.list_parts(Bucket="pcp", Key="dst", UploadId=up).get("Parts", [])
        }
        for n, body in ranges.items():
            if n not in listed:
                listed[n] = s3.upload_part(
                    Bucket="pcp", Key="dst", UploadId=up, PartNumber=n, Body=body
                )["ETag"]
        s3.complete_multipart_upload(
            Bucket="pcp",
            Key="dst",
            UploadId=up,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(listed.items())]
            },
        )
        assert body_of(s3, "pcp", "dst") == data
        srv.stop()
        _no_strays(srv)
    finally:
        srv.stop()


@pytest.mark.timeout(400)
def test_kill9_during_delete_objects_of_many_versioned_keys(tmp_path: Path) -> None:
    """DeleteObjects of 600 keys (with and without version ids) in a versioned bucket,
    killed at random moments: no version is lost but those deleted by id, none is listed
    twice, every key has at most one latest entry and every listed version reads back."""
    rng = random.Random(int(time.time()) + 2)
    srv = start_server(tmp_path)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="dvk")
        s3.put_bucket_versioning(Bucket="dvk", VersioningConfiguration={"Status": "Enabled"})
        keys = [f"k/{i:04d}" for i in range(600)]
        written: dict[str, tuple[str, bytes]] = {}
        for i, key in enumerate(keys):
            body = key.encode() * (1 + (i % 3) * 2000)  # inline and blob bodies
            written[s3.put_object(Bucket="dvk", Key=key, Body=body)["VersionId"]] = (key, body)
        by_key = {key: vid for vid, (key, _) in written.items()}
        by_id: set[str] = set()  # the versions some round deleted by id
        for rnd in range(3):
            targets = keys[rnd * 200 : rnd * 200 + 200]
            entries = [
                {"Key": k, "VersionId": by_key[k]} if i % 2 else {"Key": k}
                for i, k in enumerate(targets)
            ]
            c = make_client(srv.endpoint, read_timeout=60)
            answer = _kill_amid(
                srv,
                lambda c=c, e=entries: c.delete_objects(
                    Bucket="dvk", Delete={"Objects": e, "Quiet": False}
                ),
                rng.uniform(0.0, 0.3),
            )
            s3 = make_client(srv.endpoint)
            _no_strays(srv)
            versions = _every_version_reads_back(s3, "dvk")
            present = {v["VersionId"] for v in versions}
            asked = {by_key[k] for i, k in enumerate(targets) if i % 2}
            by_id |= asked
            # Versions not deleted by id are all still there.
            for vid, (key, _body) in written.items():
                if vid in by_id:
                    continue
                assert vid in present, (key, vid)
            if isinstance(answer, dict):
                assert not answer.get("Errors")
                assert not (asked & present), "an acknowledged version delete was lost"
            for vid in list(present)[:20]:
                key, body = written[vid]
                assert body_of(s3, "dvk", key, VersionId=vid) == body
            markers: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {"Bucket": "dvk"}
            while True:
                page = s3.list_object_versions(**kwargs)
                markers += page.get("DeleteMarkers", [])
                if not page["IsTruncated"]:
                    break
                kwargs.update(
                    KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"]
                )
            latest: dict[str, int] = {}
            for e in versions + markers:
                if e["IsLatest"]:
                    latest[e["Key"]] = latest.get(e["Key"], 0) + 1
            assert all(n == 1 for n in latest.values()), latest
            listed = set()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="dvk"):
                listed |= {o["Key"] for o in page.get("Contents", [])}
            for key in rng.sample(sorted(listed), min(30, len(listed))):
                s3.head_object(Bucket="dvk", Key=key)
    finally:
        srv.stop()


@pytest.mark.timeout(400)
def test_kill9_while_versioning_is_suspended_under_writes(tmp_path: Path) -> None:
    """Overwrites of a few keys run while versioning is suspended and the server is killed:
    every acknowledged versioned write keeps its version, the suspension (if acknowledged)
    holds, each key has at most one null version and every listed version reads back."""
    rng = random.Random(int(time.time()) + 3)
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="svk")
        s3.put_bucket_versioning(Bucket="svk", VersioningConfiguration={"Status": "Enabled"})
        acked: dict[str, tuple[str, str]] = {}  # version id -> (key, sha256)
        lock = threading.Lock()
        stop = threading.Event()

        def writer(seed: int) -> None:
            r = random.Random(seed)
            c = make_client(srv.endpoint, connect_timeout=5, read_timeout=20)
            while not stop.is_set():
                key = f"w/{r.randrange(3)}"
                body = os.urandom(r.choice([100, 300_000]))
                try:
                    vid = c.put_object(Bucket="svk", Key=key, Body=body).get("VersionId")
                except Exception:
                    if stop.is_set():
                        return
                    continue
                if vid and vid != "null":
                    with lock:
                        acked[vid] = (key, hashlib.sha256(body).hexdigest())

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.0))
        suspended = False
        try:
            s3.put_bucket_versioning(Bucket="svk", VersioningConfiguration={"Status": "Suspended"})
            suspended = True
        except ClientError:
            pass
        time.sleep(rng.uniform(0.0, 0.5))
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(60)
        srv.start()
        s3 = make_client(srv.endpoint)
        _no_strays(srv)
        if suspended:
            assert s3.get_bucket_versioning(Bucket="svk")["Status"] == "Suspended"
        versions = _every_version_reads_back(s3, "svk")
        present = {v["VersionId"]: v for v in versions}
        for vid, (key, sha) in acked.items():
            assert vid in present, (key, vid)
            got = body_of(s3, "svk", key, VersionId=vid)
            assert hashlib.sha256(got).hexdigest() == sha
        nulls: dict[str, int] = {}
        for v in versions:
            if v["VersionId"] == "null":
                nulls[v["Key"]] = nulls.get(v["Key"], 0) + 1
        assert all(n == 1 for n in nulls.values()), nulls
    finally:
        srv.stop()


def _sse_bodies(s3: Any, bucket: str, expected: dict[str, bytes]) -> None:
    """Every SSE-S3 object reads back (its data key opens) with its bytes."""
    for key, body in expected.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["ServerSideEncryption"] == "AES256"
        assert got["Body"].read() == body, key


@pytest.mark.timeout(500)
def test_kill9_of_key_rotate_midway_loses_no_data_key(tmp_path: Path) -> None:
    """`key rotate` killed at random moments while SSE-S3 writes run: every object (the
    acknowledged writes among them) still opens, on the running server and after a
    restart; the key file stays readable; a rotation run to its end afterwards re-wraps
    everything and the retired keys it drops wrap nothing."""
    import json
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT_AK, ROOT_SK

    rng = random.Random(int(time.time()) + 4)
    srv = start_server(tmp_path, env={"S3TORRENT_ENCRYPTION__DEFAULT": "AES256"})
    try:
        s3 = make_client(srv.endpoint, max_pool_connections=16)
        s3.create_bucket(Bucket="rot")
        expected: dict[str, bytes] = {}
        lock = threading.Lock()

        def put_many(start: int, n: int) -> None:
            c = make_client(srv.endpoint)
            for i in range(start, start + n):
                body = f"object {i}".encode() * (1 + i % 5) * (1 if i % 7 else 4000)
                c.put_object(Bucket="rot", Key=f"o/{i:05d}", Body=body)
                with lock:
                    expected[f"o/{i:05d}"] = body

        seeders = [threading.Thread(target=put_many, args=(j * 200, 200)) for j in range(4)]
        for t in seeders:
            t.start()
        for t in seeders:
            t.join(120)
        assert len(expected) == 800
        env = {
            **os.environ,
            "S3TORRENT_ROOT_ACCESS_KEY": ROOT_AK,
            "S3TORRENT_ROOT_SECRET_KEY": ROOT_SK,
        }
        rotate = [
            sys.executable,
            "-m",
            "s3torrent.cli",
            "--data-dir",
            str(srv.data_dir),
            "key",
            "rotate",
        ]
        stop = threading.Event()

        def writer() -> None:
            c = make_client(srv.endpoint, connect_timeout=5, read_timeout=20)
            i = 10_000
            while not stop.is_set():
                body = os.urandom(64 + i % 3000)
                c.put_object(Bucket="rot", Key=f"o/{i:05d}", Body=body)
                with lock:
                    expected[f"o/{i:05d}"] = body
                i += 1

        w = threading.Thread(target=writer)
        w.start()
        try:
            for _ in range(3):
                proc = subprocess.Popen(
                    rotate, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
                try:
                    proc.wait(rng.uniform(0.8, 3.0))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                keys = json.loads((srv.data_dir / "sse-master-keys.json").read_text())
                assert keys["current"] in keys["keys"]
                with lock:
                    now = dict(expected)
                _sse_bodies(s3, "rot", now)
        finally:
            stop.set()
            w.join(60)
        srv.kill9()
        srv.start()
        s3 = make_client(srv.endpoint)
        _sse_bodies(s3, "rot", expected)
        done = subprocess.run(rotate, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        done = subprocess.run(rotate, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        srv.kill9()
        srv.start()
        s3 = make_client(srv.endpoint)
        _sse_bodies(s3, "rot", expected)
        listed = srv.cli("key", "show")
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.strip().splitlines()) <= 3, listed.stdout
    finally:
        srv.stop()


@pytest.mark.timeout(400)
def test_kill9_during_a_lifecycle_expiration_pass(tmp_path: Path) -> None:
    """A lifecycle pass (current versions expire into delete markers, noncurrent ones are
    removed) killed at random moments, in small steps: no row is left naming a removed
    blob, and the passes after the restarts finish the work: no version is left, each key
    at most one delete marker, and no blob is left without its row."""
    rng = random.Random(int(time.time()) + 5)
    env = {
        "S3TORRENT_LIFECYCLE__DAY_SECONDS": "1",
        "S3TORRENT_LIFECYCLE__INTERVAL": "0.3",
        "S3TORRENT_LIFECYCLE__BATCH_SIZE": "20",
        "S3TORRENT_SEEDER__ENABLED": "false",
    }
    srv = start_server(tmp_path, env=env, workers=2)
    try:
        s3 = make_client(srv.endpoint, max_pool_connections=16)
        s3.create_bucket(Bucket="lcy")
        s3.put_bucket_versioning(Bucket="lcy", VersioningConfiguration={"Status": "Enabled"})
        keys = [f"e/{i:04d}" for i in range(300)]

        def put_keys(part: list[str]) -> None:
            c = make_client(srv.endpoint)
            for i, key in enumerate(part):
                for v in range(2):
                    body = f"{key}:{v}".encode() * (1 if i % 3 else 3000)
                    c.put_object(Bucket="lcy", Key=key, Body=body)

        loaders = [threading.Thread(target=put_keys, args=(keys[j::4],)) for j in range(4)]
        for t in loaders:
            t.start()
        for t in loaders:
            t.join(120)
        s3.put_bucket_lifecycle_configuration(
            Bucket="lcy",
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "all",
                        "Status": "Enabled",
                        "Filter": {"Prefix": "e/"},
                        "Expiration": {"Days": 1},
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                    }
                ]
            },
        )
        time.sleep(1.2)  # a "day" passes: everything is due
        for _ in range(3):
            time.sleep(rng.uniform(0.2, 1.5))
            srv.kill9()
            # Stopped: every blob a row names is there (a pass removes a row, then its blob).
            files, referenced = _stored_blobs(srv)
            assert referenced <= files, referenced - files
            srv.start()
        s3 = make_client(srv.endpoint)
        deadline = time.monotonic() + 120
        while s3.list_object_versions(Bucket="lcy").get("Versions"):
            assert time.monotonic() < deadline, "the passes after the restarts did not finish"
            time.sleep(0.5)
        srv.stop()
        _no_strays(srv)
        srv.start()
        s3 = make_client(srv.endpoint)
        markers: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket="lcy"):
            assert not page.get("Versions")
            markers += page.get("DeleteMarkers", [])
        assert len({m["Key"] for m in markers}) == len(markers)
        assert {m["Key"] for m in markers} <= set(keys)
        assert all(m["IsLatest"] for m in markers)
    finally:
        srv.stop()


def _seal_owners(srv: LiveServer) -> tuple[set[str], set[str], set[str]]:
    """(key record owners, versions, uploads) of a stopped server's database."""
    import sqlite3

    db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
    try:
        records = {r[0] for r in db.execute("SELECT owner FROM sse_keys")}
        versions = {r[0] for r in db.execute("SELECT version_id FROM objects")}
        versions |= {
            r[0]
            for r in db.execute("SELECT version_id FROM object_versions WHERE NOT delete_marker")
        }
        uploads = {r[0] for r in db.execute("SELECT upload_id FROM uploads")}
    finally:
        db.close()
    return records, versions, uploads


@pytest.mark.timeout(400)
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6])
def test_kill9_amid_an_sse_s3_multipart_completion(tmp_path: Path, delay: float) -> None:
    """A sealed (SSE-S3) upload of 30 MiB completed in a versioned bucket and killed
    `delay` s after: after the restart the upload is completed or completable (a retry
    answers or completes it), the object opens whole, every version and upload has its
    key record and no record is left without its version or upload."""
    srv = start_server(tmp_path, env={"S3TORRENT_ENCRYPTION__DEFAULT": "AES256"}, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="sem")
        s3.put_bucket_versioning(Bucket="sem", VersioningConfiguration={"Status": "Enabled"})
        old = os.urandom(MIB)
        s3.put_object(Bucket="sem", Key="mp", Body=old)
        parts = [os.urandom(6 * MIB) for _ in range(5)]
        up = s3.create_multipart_upload(Bucket="sem", Key="mp")["UploadId"]
        listed = [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(Bucket="sem", Key="mp", UploadId=up, PartNumber=n, Body=b)[
                    "ETag"
                ],
            }
            for n, b in enumerate(parts, 1)
        ]
        c = make_client(srv.endpoint, read_timeout=60)
        answer = _kill_amid(
            srv,
            lambda: c.complete_multipart_upload(
                Bucket="sem", Key="mp", UploadId=up, MultipartUpload={"Parts": listed}
            ),
            delay,
        )
        srv.stop()
        records, versions, uploads = _seal_owners(srv)
        assert versions | uploads <= records, (versions | uploads) - records
        assert records <= versions | uploads, records - versions - uploads
        _no_strays(srv)
        srv.start()
        s3 = make_client(srv.endpoint)
        retried = s3.complete_multipart_upload(
            Bucket="sem", Key="mp", UploadId=up, MultipartUpload={"Parts": listed}
        )
        if isinstance(answer, dict):
            assert retried["ETag"] == answer["ETag"]
            assert retried["VersionId"] == answer["VersionId"]
        got = s3.get_object(Bucket="sem", Key="mp")
        assert got["ServerSideEncryption"] == "AES256"
        assert got["Body"].read() == b"".join(parts)
        versions_listed = _every_version_reads_back(s3, "sem")
        assert len(versions_listed) == 2, versions_listed
        assert not s3.list_multipart_uploads(Bucket="sem").get("Uploads")
    finally:
        srv.stop()
