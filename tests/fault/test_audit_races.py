"""Races as production meets them: `serve --workers 2`, many clients at once on one key.

Every test starts its racers on a barrier, each with its own client (its own connections,
which the kernel spreads over both workers), and checks an invariant that holds whatever
the interleaving: exactly one winner of a conditional write, the stored bytes are the
winner's, every acknowledged version is listed, and so on.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_conditional_writes import race_create_only
from tests.conftest import LiveServer, make_client, start_server

MIB = 1024 * 1024
LOSERS = {"412 PreconditionFailed", "409 ConditionalRequestConflict"}


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("races"), workers=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3(two: LiveServer) -> Any:
    return make_client(two.endpoint, max_pool_connections=20)


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = "race-" + request.node.name.replace("_", "-")[5:40].strip("-").lower()
    s3.create_bucket(Bucket=name)
    return name


def outcome(call: Callable[[], Any]) -> tuple[int | str, Any]:
    """(200, the answer) or ("STATUS Code", the error)."""
    try:
        return 200, call()
    except ClientError as exc:
        resp = exc.response
        status = resp["ResponseMetadata"]["HTTPStatusCode"]
        return f"{status} {resp['Error'].get('Code')}", exc


def race(endpoint: str, calls: list[Callable[[Any], Any]]) -> list[tuple[int | str, Any]]:
    """Run every call at once, each with its own client; their outcomes, in order."""
    clients = [make_client(endpoint, read_timeout=60) for _ in calls]
    barrier = threading.Barrier(len(calls))
    results: list[tuple[int | str, Any] | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = outcome(lambda: calls[i](clients[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None for r in results), "a racer did not finish"
    return [r for r in results if r is not None]


def body_of(s3: Any, bucket: str, key: str, **kw: Any) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read())


def start_upload(
    s3: Any, bucket: str, key: str, parts: list[bytes], sse: str | None = None
) -> tuple[str, list[Any]]:
    extra = {"ServerSideEncryption": sse} if sse else {}
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    listed = []
    for n, data in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=data)["ETag"]
        listed.append({"PartNumber": n, "ETag": etag})
    return up, listed


# ---- conditional writes ----


@pytest.mark.timeout(180)
def test_create_only_writers_on_both_workers_have_one_winner(two: LiveServer, bucket: str) -> None:
    for round_ in range(2):
        race_create_only([two.endpoint], bucket, f"k{round_}", writers=24)


@pytest.mark.timeout(180)
def test_if_match_is_a_compare_and_swap(two: LiveServer, s3: Any, bucket: str) -> None:
    """Of writers that all name the current ETag, one replaces it; the next round names the
    winner's ETag. Small (inline) and blob bodies both."""
    etag = s3.put_object(Bucket=bucket, Key="cas", Body=b"v0")["ETag"]
    for round_, size in enumerate([10, 300_000, 10]):

        def write(c: Any, i: int, e: str = etag, r: int = round_, n: int = size) -> Any:
            body = f"{r}:{i}:".encode().ljust(n, b".")
            return c.put_object(Bucket=bucket, Key="cas", Body=body, IfMatch=e)

        results = race(two.endpoint, [lambda c, i=i: write(c, i) for i in range(16)])
        winners = [i for i, (r, _) in enumerate(results) if r == 200]
        assert len(winners) == 1, [r for r, _ in results]
        assert {r for r, _ in results if r != 200} <= LOSERS, results
        got = body_of(s3, bucket, "cas")
        assert got.startswith(f"{round_}:{winners[0]}:".encode())
        etag = results[winners[0]][1]["ETag"]
        assert s3.head_object(Bucket=bucket, Key="cas")["ETag"] == etag


@pytest.mark.timeout(180)
def test_racing_conditional_completes_have_one_winner(
    two: LiveServer, s3: Any, bucket: str
) -> None:
    uploads = [start_upload(s3, bucket, "mp", [f"upload {i}".encode()]) for i in range(10)]
    results = race(
        two.endpoint,
        [
            lambda c, u=u: c.complete_multipart_upload(
                Bucket=bucket,
                Key="mp",
                UploadId=u[0],
                MultipartUpload={"Parts": u[1]},
                IfNoneMatch="*",
            )
            for u in uploads
        ],
    )
    winners = [i for i, (r, _) in enumerate(results) if r == 200]
    assert len(winners) == 1, [r for r, _ in results]
    assert {r for r, _ in results if r != 200} <= LOSERS, results
    assert body_of(s3, bucket, "mp") == f"upload {winners[0]}".encode()


@pytest.mark.timeout(180)
def test_racing_conditional_copies_have_one_winner(two: LiveServer, s3: Any, bucket: str) -> None:
    for i in range(10):
        s3.put_object(Bucket=bucket, Key=f"src{i}", Body=f"source {i}".encode() * 1000)
    results = race(
        two.endpoint,
        [
            lambda c, i=i: c.copy_object(
                Bucket=bucket,
                Key="dst",
                CopySource={"Bucket": bucket, "Key": f"src{i}"},
                IfNoneMatch="*",
            )
            for i in range(10)
        ],
    )
    winners = [i for i, (r, _) in enumerate(results) if r == 200]
    assert len(winners) == 1, [r for r, _ in results]
    assert {r for r, _ in results if r != 200} <= LOSERS, results
    assert body_of(s3, bucket, "dst") == f"source {winners[0]}".encode() * 1000


@pytest.mark.timeout(180)
def test_racing_deletes_with_if_match_have_one_winner(
    two: LiveServer, s3: Any, bucket: str
) -> None:
    """Versioned: a delete with If-Match adds a delete marker; of deleters naming the same
    ETag, only one may (the others find the marker, not the ETag)."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    etag = s3.put_object(Bucket=bucket, Key="d", Body=b"x")["ETag"]
    results = race(
        two.endpoint,
        [lambda c: c.delete_object(Bucket=bucket, Key="d", IfMatch=etag) for _ in range(12)],
    )
    winners = [r for r, _ in results if r == 200]
    assert len(winners) == 1, [r for r, _ in results]
    markers = s3.list_object_versions(Bucket=bucket).get("DeleteMarkers", [])
    assert len(markers) == 1, markers


# ---- multipart ----


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sse", [None, "AES256"], ids=["plain", "sse-s3"])
def test_two_racing_completes_of_one_upload_both_answer_the_object(
    two: LiveServer, s3: Any, bucket: str, sse: str | None
) -> None:
    """A client that retries a Complete whose answer is slow races its own first try: S3
    answers both 200 with the same ETag, and the object is the upload's bytes."""
    for round_ in range(4):
        key = f"twice{round_}"
        parts_data = [os.urandom(5 * MIB), b"tail" * 100]
        up, parts = start_upload(s3, bucket, key, parts_data, sse)

        def complete(c: Any, u: str = up, p: list[Any] = parts, k: str = key) -> Any:
            return c.complete_multipart_upload(
                Bucket=bucket, Key=k, UploadId=u, MultipartUpload={"Parts": p}
            )

        results = race(two.endpoint, [complete, complete, complete])
        assert [r for r, _ in results] == [200, 200, 200], results
        assert len({a["ETag"] for _, a in results}) == 1
        assert body_of(s3, bucket, key) == b"".join(parts_data)


@pytest.mark.timeout(180)
def test_complete_racing_abort_is_one_or_the_other(two: LiveServer, s3: Any, bucket: str) -> None:
    for round_ in range(4):
        key = f"ca{round_}"
        parts_data = [os.urandom(5 * MIB), b"end"]
        up, parts = start_upload(s3, bucket, key, parts_data)
        (done, _), (aborted, _) = race(
            two.endpoint,
            [
                lambda c, u=up, p=parts, k=key: c.complete_multipart_upload(
                    Bucket=bucket, Key=k, UploadId=u, MultipartUpload={"Parts": p}
                ),
                lambda c, u=up, k=key: c.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=u),
            ],
        )
        if done == 200:
            # Aborting a completed upload: NoSuchUpload (S3 may answer 204 too).
            assert aborted in {"404 NoSuchUpload", 200}, aborted
            assert body_of(s3, bucket, key) == b"".join(parts_data)
        else:
            assert (done, aborted) == ("404 NoSuchUpload", 200)
            with pytest.raises(ClientError):
                s3.head_object(Bucket=bucket, Key=key)
        listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert up not in {u["UploadId"] for u in listed}


@pytest.mark.timeout(180)
def test_part_uploaded_twice_at_once_keeps_one_of_them(
    two: LiveServer, s3: Any, bucket: str
) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="pp")["UploadId"]
    bodies = [bytes([65 + i]) * (5 * MIB) for i in range(4)]
    results = race(
        two.endpoint,
        [
            lambda c, b=b: c.upload_part(Bucket=bucket, Key="pp", UploadId=up, PartNumber=1, Body=b)
            for b in bodies
        ],
    )
    assert [r for r, _ in results] == [200] * 4, results
    listed = s3.list_parts(Bucket=bucket, Key="pp", UploadId=up)["Parts"]
    assert len(listed) == 1
    etag = listed[0]["ETag"]
    winner = [i for i, (_, a) in enumerate(results) if a["ETag"] == etag]
    assert len(winner) == 1
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="pp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert body_of(s3, bucket, "pp") == bodies[winner[0]]


@pytest.mark.timeout(180)
def test_upload_part_racing_complete(two: LiveServer, s3: Any, bucket: str) -> None:
    """A part replaced while the upload completes: the completion joins the part it was
    given (or fails), never a mix; a part sent after the completion is NoSuchUpload."""
    for round_ in range(4):
        key = f"upc{round_}"
        first = os.urandom(5 * MIB)
        up, parts = start_upload(s3, bucket, key, [first, b"second"])
        other = os.urandom(5 * MIB)
        (done, answer), (replaced, _) = race(
            two.endpoint,
            [
                lambda c, u=up, p=parts, k=key: c.complete_multipart_upload(
                    Bucket=bucket, Key=k, UploadId=u, MultipartUpload={"Parts": p}
                ),
                lambda c, u=up, k=key, b=other: c.upload_part(
                    Bucket=bucket, Key=k, UploadId=u, PartNumber=1, Body=b
                ),
            ],
        )
        if done == 200:
            assert body_of(s3, bucket, key) == first + b"second"
            assert replaced in {200, "404 NoSuchUpload"}, replaced
        else:
            assert replaced == 200
            assert done in {"400 InvalidPart", "409 ConditionalRequestConflict"}, answer


# ---- versioning ----


@pytest.mark.timeout(180)
def test_concurrent_versioned_puts_and_deletes_list_every_acknowledged_version(
    two: LiveServer, s3: Any, bucket: str
) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put(c: Any, i: int) -> Any:
        size = 50 if i % 2 else 200_000
        return c.put_object(Bucket=bucket, Key="v", Body=f"{i}:".encode().ljust(size, b"."))

    calls: list[Callable[[Any], Any]] = [lambda c, i=i: put(c, i) for i in range(16)]
    calls += [lambda c: c.delete_object(Bucket=bucket, Key="v") for _ in range(4)]
    results = race(two.endpoint, calls)
    assert all(r == 200 for r, _ in results), results
    acked = {a["VersionId"] for _, a in results}
    assert len(acked) == 20
    listing = s3.list_object_versions(Bucket=bucket)
    entries = listing.get("Versions", []) + listing.get("DeleteMarkers", [])
    assert {e["VersionId"] for e in entries} == acked
    latest = [e for e in entries if e["IsLatest"]]
    assert len(latest) == 1, latest
    if latest[0] in listing.get("DeleteMarkers", []):
        with pytest.raises(ClientError):
            s3.get_object(Bucket=bucket, Key="v")
    else:
        got = s3.get_object(Bucket=bucket, Key="v")
        assert got["VersionId"] == latest[0]["VersionId"]
        assert got["ETag"] == latest[0]["ETag"]
    for e in listing.get("Versions", []):
        assert s3.get_object(Bucket=bucket, Key="v", VersionId=e["VersionId"])["ETag"] == e["ETag"]


# ---- object lock ----


@pytest.mark.timeout(180)
def test_legal_hold_racing_version_deletes(two: LiveServer, s3: Any) -> None:
    """A version deleted while a legal hold is put on it: either the hold came first and
    the delete is refused, or the delete came first and the hold finds no version."""
    s3.create_bucket(Bucket="race-lock", ObjectLockEnabledForBucket=True)
    for _ in range(6):
        vid = s3.put_object(Bucket="race-lock", Key="l", Body=b"held")["VersionId"]
        (held, _), (deleted, _) = race(
            two.endpoint,
            [
                lambda c, v=vid: c.put_object_legal_hold(
                    Bucket="race-lock", Key="l", VersionId=v, LegalHold={"Status": "ON"}
                ),
                lambda c, v=vid: c.delete_object(Bucket="race-lock", Key="l", VersionId=v),
            ],
        )
        exists = True
        try:
            s3.head_object(Bucket="race-lock", Key="l", VersionId=vid)
        except ClientError:
            exists = False
        if held == 200:
            assert exists and deleted == "403 AccessDenied", (held, deleted)
            s3.put_object_legal_hold(
                Bucket="race-lock", Key="l", VersionId=vid, LegalHold={"Status": "OFF"}
            )
        else:
            assert deleted == 200 and not exists, (held, deleted)


@pytest.mark.timeout(180)
def test_governance_retention_racing_version_deletes(two: LiveServer, s3: Any) -> None:
    s3.create_bucket(Bucket="race-ret", ObjectLockEnabledForBucket=True)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    for _ in range(6):
        vid = s3.put_object(Bucket="race-ret", Key="r", Body=b"kept")["VersionId"]
        (kept, _), (deleted, _) = race(
            two.endpoint,
            [
                lambda c, v=vid: c.put_object_retention(
                    Bucket="race-ret",
                    Key="r",
                    VersionId=v,
                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
                ),
                lambda c, v=vid: c.delete_object(Bucket="race-ret", Key="r", VersionId=v),
            ],
        )
        exists = True
        try:
            s3.head_object(Bucket="race-ret", Key="r", VersionId=vid)
        except ClientError:
            exists = False
        if kept == 200:
            assert exists and deleted == "403 AccessDenied", (kept, deleted)
            s3.delete_object(
                Bucket="race-ret", Key="r", VersionId=vid, BypassGovernanceRetention=True
            )
        else:
            assert deleted == 200 and not exists, (kept, deleted)


# ---- buckets ----


@pytest.mark.timeout(180)
def test_writes_racing_delete_bucket_never_land_in_a_deleted_bucket(
    two: LiveServer, s3: Any
) -> None:
    """A PutObject, a CompleteMultipartUpload and a CopyObject racing DeleteBucket: either
    the bucket is gone and every write failed, or a write landed and the delete was
    BucketNotEmpty; never an acknowledged object in a bucket that is gone."""
    s3.create_bucket(Bucket="race-src")
    s3.put_object(Bucket="race-src", Key="s", Body=b"source")
    for round_ in range(8):
        name = f"race-del-{round_}"
        s3.create_bucket(Bucket=name)
        up, parts = start_upload(s3, name, "mp", [b"part"])
        results = race(
            two.endpoint,
            [
                lambda c, n=name: c.delete_bucket(Bucket=n),
                lambda c, n=name: c.put_object(Bucket=n, Key="p", Body=b"x"),
                lambda c, n=name, u=up, p=parts: c.complete_multipart_upload(
                    Bucket=n, Key="mp", UploadId=u, MultipartUpload={"Parts": p}
                ),
                lambda c, n=name: c.copy_object(
                    Bucket=n, Key="c", CopySource={"Bucket": "race-src", "Key": "s"}
                ),
            ],
        )
        deleted, *writes = [r for r, _ in results]
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        if deleted == 200:
            assert name not in buckets
            assert 200 not in writes, results
        else:
            assert deleted == "409 BucketNotEmpty", results
            assert name in buckets
            listed = {o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", [])}
            landed = {k for k, r in zip(("p", "mp", "c"), writes, strict=True) if r == 200}
            assert listed == landed, results


# ---- read your writes across workers ----


@pytest.mark.timeout(180)
def test_a_change_acknowledged_by_one_worker_is_what_the_other_answers_next(
    two: LiveServer, s3: Any
) -> None:
    """Each change goes to one worker and the read right after its answer to the other:
    object bytes, an access grant and its revocation (policy, object ACL), a delete."""
    from tests.api.test_workers import connect_to, send
    from tests.seeding import public_read_policy

    s3.create_bucket(Bucket="race-ryw")
    for n in range(20):
        writer, reader = (0, 1) if n % 2 else (1, 0)
        w, r = connect_to(two, writer), connect_to(two, reader)
        try:
            body = os.urandom(100 + n * 3000)
            status, _ = send(w, "PUT", "/race-ryw/k", body=body, signed=True)
            assert status == 200
            assert send(r, "GET", "/race-ryw/k", signed=True) == (200, body)
            status, _ = send(
                w,
                "PUT",
                "/race-ryw?policy",
                body=public_read_policy("race-ryw").encode(),
                signed=True,
            )
            assert status == 204
            assert send(r, "GET", "/race-ryw/k") == (200, body), n
            status, _ = send(w, "DELETE", "/race-ryw?policy", signed=True)
            assert status == 204
            assert send(r, "GET", "/race-ryw/k")[0] == 403, n
            status, _ = send(
                w, "PUT", "/race-ryw/k?acl", headers={"x-amz-acl": "public-read"}, signed=True
            )
            assert status == 200
            assert send(r, "GET", "/race-ryw/k")[0] == 200, n
            status, _ = send(
                w, "PUT", "/race-ryw/k?acl", headers={"x-amz-acl": "private"}, signed=True
            )
            assert status == 200
            assert send(r, "GET", "/race-ryw/k")[0] == 403, n
            status, _ = send(w, "DELETE", "/race-ryw/k", signed=True)
            assert status == 204
            assert send(r, "GET", "/race-ryw/k", signed=True)[0] == 404, n
        finally:
            w.close()
            r.close()


# ---- a download under way when its version is replaced ----


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sse", [None, "AES256"], ids=["plain", "sse-s3"])
def test_a_slow_get_finishes_though_its_version_is_overwritten_meanwhile(
    two: LiveServer, s3: Any, sse: str | None
) -> None:
    """S3 finishes a GET already under way when its object is overwritten or deleted. A
    slow reader of a large object, its key overwritten (then deleted) a moment after the
    answer began, gets every byte of the version it began with, also when that version
    is encrypted at rest (its chunks are read and opened as they are sent)."""
    name = f"race-slow-{sse or 'plain'}".lower()
    s3.create_bucket(Bucket=name)
    data = os.urandom(48 * MIB)
    extra = {"ServerSideEncryption": sse} if sse else {}
    s3.put_object(Bucket=name, Key="big", Body=data, **extra)
    reader = make_client(two.endpoint, read_timeout=60)
    body = reader.get_object(Bucket=name, Key="big")["Body"]
    got = bytearray(body.read(MIB))
    s3.put_object(Bucket=name, Key="big", Body=b"new", **extra)
    s3.delete_object(Bucket=name, Key="big")
    # Slower than the old blob's deletion (storage: 2 s after the overwrite) by far.
    started = time.monotonic()
    while chunk := body.read(MIB):
        got += chunk
        if time.monotonic() - started < 4:
            time.sleep(0.1)
    assert len(got) == len(data)
    assert got == data


@pytest.mark.timeout(180)
def test_racing_writes_to_a_suspended_bucket_keep_one_null_version_and_no_stray_blob(
    two: LiveServer, s3: Any, bucket: str
) -> None:
    """With versioning suspended each write replaces the key's null version: of racing
    PUTs, CopyObjects and deletes on both workers one null version (or marker) is left,
    the versions from before the suspension stay, and every blob the losers replaced is
    deleted (none is left without a row, none of the kept ones is missing)."""
    from tests.fault.test_audit_crash import _stored_blobs
    from tests.seeding import wait_for

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned " * 30_000)["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied " * 40_000)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    calls: list[Callable[[Any], Any]] = [
        lambda c, i=i: c.put_object(
            Bucket=bucket, Key="k", Body=f"{i}:".encode().ljust(100 if i % 2 else 300_000, b".")
        )
        for i in range(10)
    ]
    calls += [
        lambda c: c.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "src"})
        for _ in range(3)
    ]
    calls += [lambda c: c.delete_object(Bucket=bucket, Key="k") for _ in range(3)]
    results = race(two.endpoint, calls)
    assert all(r == 200 for r, _ in results), results
    listing = s3.list_object_versions(Bucket=bucket, Prefix="k")
    entries = listing.get("Versions", []) + listing.get("DeleteMarkers", [])
    assert sorted(e["VersionId"] for e in entries) == sorted(["null", kept]), entries
    assert body_of(s3, bucket, "k", VersionId=kept) == b"versioned " * 30_000

    def settled() -> bool:
        files, referenced = _stored_blobs(two)
        return files == referenced

    try:
        wait_for(settled, "replaced blobs deleted, and only those", timeout=20)
    except AssertionError:
        files, referenced = _stored_blobs(two)
        raise AssertionError((files - referenced, referenced - files)) from None


# ---- torrents ----


@pytest.mark.timeout(180)
def test_racing_first_torrent_requests_on_both_workers_agree(
    two: LiveServer, s3: Any, bucket: str
) -> None:
    """A completed multipart object is hashed after its commit; the first `?torrent`
    requests, on both workers at once, wait for one hashing (a claim each worker respects)
    and all answer the same torrent, whose pieces are the object's."""
    from tests.fault.test_audit_crash import check_torrent
    from tests.seeding import public_read_policy

    s3.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))
    for round_ in range(2):
        key = f"t{round_}"
        parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(3 * MIB)]
        up, listed = start_upload(s3, bucket, key, parts)
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": listed}
        )
        url = f"{two.endpoint}/{bucket}/{key}?torrent"

        def fetch(_: Any, u: str = url) -> bytes:
            import urllib.request

            with urllib.request.urlopen(u, timeout=60) as r:
                return bytes(r.read())

        results = race(two.endpoint, [fetch] * 8)
        assert all(r == 200 for r, _ in results), results
        assert len({t for _, t in results}) == 1
        assert check_torrent(two, bucket, key, b"".join(parts)) == results[0][1]


@pytest.mark.timeout(180)
def test_tagging_and_acl_of_a_version_deleted_meanwhile_are_no_such_version(
    two: LiveServer, s3: Any, bucket: str
) -> None:
    """A change to a version named by id, racing that version's deletion: it happened
    first (the delete succeeded after it), or it finds no version and says so, as its
    lookup would have: NoSuchVersion, not NoSuchKey (the key still has other versions)."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"stays")
    seen: set[int | str] = set()
    for _ in range(10):
        vid = s3.put_object(Bucket=bucket, Key="k", Body=b"goes")["VersionId"]
        results = race(
            two.endpoint,
            [
                lambda c, v=vid: c.delete_object(Bucket=bucket, Key="k", VersionId=v),
                lambda c, v=vid: c.put_object_tagging(
                    Bucket=bucket,
                    Key="k",
                    VersionId=v,
                    Tagging={"TagSet": [{"Key": "a", "Value": "b"}]},
                ),
                lambda c, v=vid: c.put_object_acl(
                    Bucket=bucket, Key="k", VersionId=v, ACL="public-read"
                ),
                lambda c, v=vid: c.delete_object_tagging(Bucket=bucket, Key="k", VersionId=v),
            ],
        )
        assert results[0][0] == 200, results
        for status, _ in results[1:]:
            assert status in {200, "404 NoSuchVersion"}, results
            seen.add(status)


# ---- a bucket deleted and created again while a write to it is under way ----


def _slow_request(
    srv: LiveServer,
    keys: Any,
    method: str,
    path: str,
    body: bytes,
    meanwhile: Callable[[], None],
    extra: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """Send the head and half the body, run `meanwhile`, send the rest; the answer."""
    import http.client

    from tests.conftest import sign_request

    url = f"{srv.endpoint}{path}"
    headers = sign_request(
        method,
        url,
        headers={"Content-Length": str(len(body)), **(extra or {})},
        ak=keys.access_key,
        sk=keys.secret_key,
        payload_hash="UNSIGNED-PAYLOAD",
    )
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        half = len(body) // 2
        conn.send(body[:half])
        time.sleep(0.3)  # the server has looked the bucket up and authorized the write
        meanwhile()
        conn.send(body[half:])
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def users(two: LiveServer) -> tuple[Any, Any]:
    from tests.conftest import add_user

    return add_user(two, "mallory"), add_user(two, "victim")


@pytest.mark.timeout(120)
def test_a_write_under_way_does_not_land_in_a_bucket_created_again_by_someone_else(
    two: LiveServer, users: tuple[Any, Any]
) -> None:
    """Bucket names are global: one its owner deletes may be taken at once by another
    user. A write the first owner began before the delete (authorized against their own
    bucket) must not commit into the new owner's bucket of the same name: no object
    planted there, no policy granting the first owner access."""
    mallory, victim = users
    m3 = make_client(two.endpoint, mallory.access_key, mallory.secret_key)
    v3 = make_client(two.endpoint, victim.access_key, victim.secret_key)
    for n, (path, body) in enumerate(
        [
            ("/race-reborn-0/index.html", b"<script>planted</script>" * 4000),
            (
                "/race-reborn-1?policy",
                json_policy("race-reborn-1").encode(),
            ),
        ]
    ):
        name = f"race-reborn-{n}"
        m3.create_bucket(Bucket=name)

        def swap(name: str = name) -> None:
            m3.delete_bucket(Bucket=name)
            v3.create_bucket(Bucket=name)

        status, answer = _slow_request(two, mallory, "PUT", path, body, swap)
        assert status == 404 and b"NoSuchBucket" in answer, (status, answer)
        assert not v3.list_objects_v2(Bucket=name).get("Contents")
        with pytest.raises(ClientError) as exc:
            v3.get_bucket_policy(Bucket=name)
        assert exc.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
        v3.put_object(Bucket=name, Key="secret", Body=b"victim's")
        with pytest.raises(ClientError):
            m3.get_object(Bucket=name, Key="secret")


def json_policy(bucket: str) -> str:
    import json

    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject"],
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
    ).ljust(20_000)


@pytest.mark.timeout(120)
def test_racing_creates_of_one_bucket_name_have_one_owner(
    two: LiveServer, s3: Any, users: tuple[Any, Any]
) -> None:
    mallory, victim = users
    keys = [mallory, victim] * 4
    for round_ in range(4):
        name = f"race-create-{round_}"
        results = race(
            two.endpoint,
            [
                lambda c, k=k, n=name: make_client(
                    two.endpoint, k.access_key, k.secret_key
                ).create_bucket(Bucket=n)
                for k in keys
            ],
        )
        winners = [i for i, (r, _) in enumerate(results) if r == 200]
        assert len(winners) >= 1, results
        owner = keys[winners[0]]
        # Only the owner's own later tries may be 200 (S3 in us-east-1); others are 409.
        assert all(keys[i] is owner for i in winners), results
        for i, (r, _) in enumerate(results):
            if keys[i] is not owner:
                assert r == "409 BucketAlreadyExists", results


@pytest.mark.timeout(120)
def test_object_lock_and_suspended_versioning_never_both(two: LiveServer, s3: Any) -> None:
    """Object lock needs versioning Enabled, and versioning cannot be suspended while a
    lock configuration is there: a PutObjectLockConfiguration under way while versioning
    is suspended (or the other way round) must not leave a locked bucket unversioned."""
    from tests.conftest import ROOT_AK, ROOT_SK

    root = type("Keys", (), {"access_key": ROOT_AK, "secret_key": ROOT_SK})()
    lock_body = (
        b'<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"
    ).ljust(4000)
    name = "race-lock-vs-suspend"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def suspend() -> None:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})

    import base64
    import hashlib

    status, answer = _slow_request(
        two,
        root,
        "PUT",
        f"/{name}?object-lock",
        lock_body,
        suspend,
        {"Content-MD5": base64.b64encode(hashlib.md5(lock_body).digest()).decode()},
    )
    versioning = s3.get_bucket_versioning(Bucket=name).get("Status")
    if status == 200:
        assert versioning == "Enabled", "a locked bucket with versioning suspended"
    else:
        assert status == 409 and b"InvalidBucketState" in answer, (status, answer)
        assert versioning == "Suspended"


@pytest.mark.timeout(300)
def test_a_copy_finishes_though_its_source_is_overwritten_meanwhile(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """CopyObject and UploadPartCopy read their source in steps while they write the copy;
    an overwrite or delete of the source deletes its old blob (after
    storage.blob_delete_delay, short here to make the race common). The copy must still
    be whole: the old bytes (or the new ones, if the overwrite came first), never a
    NoSuchKey for a source it had already begun to read."""
    srv = start_server(
        tmp_path_factory.mktemp("copy-race"),
        env={"S3TORRENT_STORAGE__BLOB_DELETE_DELAY": "0.01"},
    )
    try:
        s3 = make_client(srv.endpoint, max_pool_connections=4)
        s3.create_bucket(Bucket="copy-race")
        old = os.urandom(40 * MIB)
        new = b"new"
        failures = []
        for round_ in range(6):
            s3.put_object(Bucket="copy-race", Key="src", Body=old)
            up = s3.create_multipart_upload(Bucket="copy-race", Key="part")["UploadId"]
            copier = make_client(srv.endpoint, read_timeout=60)
            source = {"Bucket": "copy-race", "Key": "src"}
            calls: list[Callable[[], Any]] = [
                lambda c=copier, s=source: c.copy_object(
                    Bucket="copy-race", Key="dst", CopySource=s
                ),
                lambda c=copier, s=source, u=up: c.upload_part_copy(
                    Bucket="copy-race", Key="part", UploadId=u, PartNumber=1, CopySource=s
                ),
            ]
            call = calls[round_ % 2]
            thread, out = _background_call(call)
            time.sleep(0.02 * (round_ // 2))
            s3.put_object(Bucket="copy-race", Key="src", Body=new)
            thread.join(60)
            if isinstance(out[0], ClientError):
                failures.append((round_, out[0].response["Error"]["Code"]))
            elif round_ % 2 == 0:
                assert body_of(s3, "copy-race", "dst") in (old, new)
            s3.abort_multipart_upload(Bucket="copy-race", Key="part", UploadId=up)
        assert not failures, failures
    finally:
        srv.stop()


def _background_call(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except ClientError as exc:
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, out
