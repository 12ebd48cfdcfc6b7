"""Conditional writes and deletes (If-None-Match: *, If-Match: ETag), driven by boto3.

The conditions are decided in the metadata transaction that commits the write, so of
racing `If-None-Match: *` writers exactly one wins. Run on PostgreSQL too with
S3TORRENT_TEST_METADATA=postgres (tests/scale/test_conditional_writes_postgres.py does).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, make_client

MIB = 1024 * 1024


def _err(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    resp = exc.value.response
    return str(resp["Error"].get("Code")), int(resp["ResponseMetadata"]["HTTPStatusCode"])


def _body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# ---- PutObject ----


def test_if_none_match_star_refuses_to_overwrite_an_existing_key(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="lock", Body=b"first")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"second", IfNoneMatch="*")
    assert _err(exc) == ("PreconditionFailed", 412)
    assert _body(s3, bucket, "lock") == b"first"


def test_if_none_match_star_creates_an_absent_key(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="new", Body=b"created", IfNoneMatch="*")
    assert _body(s3, bucket, "new") == b"created"


def test_if_none_match_star_refuses_a_large_blob_overwrite(s3: Any, bucket: str) -> None:
    # Above the inline size: the object has a blob of its own, which must stay intact.
    big = b"a" * (MIB + 7)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="big", Body=b"b" * (MIB + 7), IfNoneMatch="*")
    assert _err(exc) == ("PreconditionFailed", 412)
    assert _body(s3, bucket, "big") == big


def test_if_none_match_with_an_etag_is_refused_not_ignored(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch=etag)
    assert _err(exc) == ("NotImplemented", 501)
    assert _body(s3, bucket, "k") == b"one"


def test_if_match_replaces_only_the_version_it_names(s3: Any, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="cas", Body=b"v1")["ETag"]
    second = s3.put_object(Bucket=bucket, Key="cas", Body=b"v2", IfMatch=first)["ETag"]
    assert _body(s3, bucket, "cas") == b"v2"
    # The ETag of v1 is stale now: a compare-and-swap against it must fail.
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="cas", Body=b"v3", IfMatch=first)
    assert _err(exc) == ("PreconditionFailed", 412)
    assert _body(s3, bucket, "cas") == b"v2"
    # Unquoted ETags match too.
    s3.put_object(Bucket=bucket, Key="cas", Body=b"v3", IfMatch=second.strip('"'))
    assert _body(s3, bucket, "cas") == b"v3"


def test_if_match_on_an_absent_key_is_no_such_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch='"0123"')
    assert _err(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="absent")


# ---- CopyObject (destination) ----


def test_copy_with_if_none_match_star_does_not_overwrite(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"kept")
    src = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, IfNoneMatch="*")
    assert _err(exc) == ("PreconditionFailed", 412)
    assert _body(s3, bucket, "dst") == b"kept"
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=src, IfNoneMatch="*")
    assert _body(s3, bucket, "dst2") == b"source"


def test_copy_with_stale_if_match_fails_and_current_one_succeeds(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    old = s3.put_object(Bucket=bucket, Key="dst", Body=b"old")["ETag"]
    cur = s3.put_object(Bucket=bucket, Key="dst", Body=b"cur")["ETag"]
    src = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, IfMatch=old)
    assert _err(exc) == ("PreconditionFailed", 412)
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, IfMatch=cur)
    assert _body(s3, bucket, "dst") == b"source"


def test_copy_source_conditions_are_checked(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"source")["ETag"]
    src = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=src, CopySourceIfMatch='"ffff"')
    assert _err(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=src, CopySourceIfNoneMatch=etag)
    assert _err(exc) == ("PreconditionFailed", 412)
    s3.copy_object(Bucket=bucket, Key="d", CopySource=src, CopySourceIfMatch=etag)
    assert _body(s3, bucket, "d") == b"source"


# ---- CompleteMultipartUpload ----


def _start_upload(s3: Any, bucket: str, key: str, data: bytes) -> tuple[str, list[dict[str, Any]]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=data)["ETag"]
    return up, [{"PartNumber": 1, "ETag": etag}]


def test_complete_with_if_none_match_fails_when_the_key_appeared_meanwhile(
    s3: Any, bucket: str
) -> None:
    up, parts = _start_upload(s3, bucket, "mp", b"multipart bytes")
    s3.put_object(Bucket=bucket, Key="mp", Body=b"raced ahead")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
        )
    assert _err(exc) == ("PreconditionFailed", 412)
    assert _body(s3, bucket, "mp") == b"raced ahead"
    # The upload is still there: the client may decide to complete it unconditionally.
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts}
    )
    assert _body(s3, bucket, "mp") == b"multipart bytes"


def test_complete_with_if_match_replaces_the_named_version(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="mp", Body=b"before")["ETag"]
    up, parts = _start_upload(s3, bucket, "mp", b"after")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts}, IfMatch='"00"'
        )
    assert _err(exc) == ("PreconditionFailed", 412)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts}, IfMatch=etag
    )
    assert _body(s3, bucket, "mp") == b"after"


# ---- DeleteObject, DeleteObjects ----


def test_delete_with_if_match(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="d", Body=b"x")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="d", IfMatch='"0000"')
    assert _err(exc) == ("PreconditionFailed", 412)
    assert _body(s3, bucket, "d") == b"x"
    s3.delete_object(Bucket=bucket, Key="d", IfMatch=etag)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="d")
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="d", IfMatch="*")
    assert _err(exc) == ("NoSuchKey", 404)


def test_delete_objects_checks_each_etag(s3: Any, bucket: str) -> None:
    good = s3.put_object(Bucket=bucket, Key="a", Body=b"a")["ETag"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    s3.put_object(Bucket=bucket, Key="c", Body=b"c")
    resp = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Objects": [
                {"Key": "a", "ETag": good},
                {"Key": "b", "ETag": '"0000"'},
                {"Key": "c"},
            ]
        },
    )
    assert sorted(d["Key"] for d in resp.get("Deleted", [])) == ["a", "c"]
    assert [(e["Key"], e["Code"]) for e in resp.get("Errors", [])] == [("b", "PreconditionFailed")]
    assert _body(s3, bucket, "b") == b"b"


def _versions(s3: Any, bucket: str, key: str) -> list[tuple[str, bool]]:
    """The key's versions and delete markers, newest first: (version id, is a marker)."""
    resp = s3.list_object_versions(Bucket=bucket, Prefix=key)
    entries = [(v, False) for v in resp.get("Versions", [])]
    entries += [(m, True) for m in resp.get("DeleteMarkers", [])]
    entries.sort(key=lambda e: e[0]["LastModified"], reverse=True)
    return [(e["VersionId"], marker) for e, marker in entries if e["Key"] == key]


def test_delete_version_with_if_match_compares_that_versions_etag(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"one")
    second = s3.put_object(Bucket=bucket, Key="v", Body=b"two")
    old, cur = first["VersionId"], second["VersionId"]
    # The noncurrent version's own ETag decides, not the current version's.
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="v", VersionId=old, IfMatch=second["ETag"])
    assert _err(exc) == ("PreconditionFailed", 412)
    assert {vid for vid, _ in _versions(s3, bucket, "v")} == {old, cur}
    resp = s3.delete_object(Bucket=bucket, Key="v", VersionId=old, IfMatch=first["ETag"])
    assert resp["VersionId"] == old
    assert [vid for vid, _ in _versions(s3, bucket, "v")] == [cur]
    # The current version likewise; "*" only asks that the version exists.
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="v", VersionId=cur, IfMatch=first["ETag"])
    assert _err(exc) == ("PreconditionFailed", 412)
    assert _body(s3, bucket, "v") == b"two"
    s3.delete_object(Bucket=bucket, Key="v", VersionId=cur, IfMatch="*")
    assert _versions(s3, bucket, "v") == []
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="v", VersionId=cur, IfMatch="*")
    assert _err(exc) == ("NoSuchKey", 404)


def test_delete_marker_version_has_no_etag_to_match(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    etag = s3.put_object(Bucket=bucket, Key="m", Body=b"kept")["ETag"]
    marker = s3.delete_object(Bucket=bucket, Key="m")["VersionId"]
    # A delete marker is no object: a condition on it finds none, and the marker stays.
    for condition in (etag, "*"):
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=bucket, Key="m", VersionId=marker, IfMatch=condition)
        assert _err(exc) == ("NoSuchKey", 404)
    assert _versions(s3, bucket, "m")[0] == (marker, True)
    resp = s3.delete_object(Bucket=bucket, Key="m", VersionId=marker)
    assert resp["DeleteMarker"] is True
    assert _body(s3, bucket, "m") == b"kept"


def test_delete_objects_checks_each_versions_etag(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    a1 = s3.put_object(Bucket=bucket, Key="a", Body=b"a1")
    s3.put_object(Bucket=bucket, Key="a", Body=b"a2")
    b1 = s3.put_object(Bucket=bucket, Key="b", Body=b"b1")
    b2 = s3.put_object(Bucket=bucket, Key="b", Body=b"b2")
    resp = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Objects": [
                {"Key": "a", "VersionId": a1["VersionId"], "ETag": a1["ETag"]},
                {"Key": "b", "VersionId": b1["VersionId"], "ETag": b2["ETag"]},
            ]
        },
    )
    assert [(d["Key"], d["VersionId"]) for d in resp.get("Deleted", [])] == [("a", a1["VersionId"])]
    errors = [(e["Key"], e.get("VersionId"), e["Code"]) for e in resp.get("Errors", [])]
    assert errors == [("b", b1["VersionId"], "PreconditionFailed")]
    assert len(_versions(s3, bucket, "a")) == 1
    assert b1["VersionId"] in {vid for vid, _ in _versions(s3, bucket, "b")}


# ---- races ----


def race_create_only(endpoints: list[str], bucket: str, key: str, writers: int = 50) -> None:
    """`writers` threads PUT key with If-None-Match: * at once: exactly one wins, every other
    gets 412 (it saw the winner) or 409 (it lost between check and commit), and the object
    holds the winner's bytes."""
    clients = [make_client(e, max_pool_connections=writers) for e in endpoints]
    barrier = threading.Barrier(writers)
    outcomes: list[tuple[int, int | str]] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        client = clients[i % len(clients)]
        barrier.wait()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=f"writer {i}".encode(), IfNoneMatch="*")
            result: int | str = 200
        except ClientError as exc:
            code, status = _err_of(exc)
            result = f"{status} {code}"
        with lock:
            outcomes.append((i, result))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == writers
    winners = [i for i, r in outcomes if r == 200]
    losers = {r for _, r in outcomes if r != 200}
    assert len(winners) == 1, outcomes
    assert losers <= {"412 PreconditionFailed", "409 ConditionalRequestConflict"}, outcomes
    got = clients[0].get_object(Bucket=bucket, Key=key)["Body"].read()
    assert got == f"writer {winners[0]}".encode()


def _err_of(exc: ClientError) -> tuple[str, int]:
    resp = exc.response
    return str(resp["Error"].get("Code")), int(resp["ResponseMetadata"]["HTTPStatusCode"])


@pytest.mark.timeout(180)
def test_fifty_racing_create_only_writers_have_exactly_one_winner(
    server: LiveServer, bucket: str
) -> None:
    for round_ in range(3):
        race_create_only([server.endpoint], bucket, f"race-{round_}")


# ---- who may compare ETags ----


def test_etag_conditions_need_read_permission(s3: Any, bucket: str, bob: Any, bob_s3: Any) -> None:
    """If-Match tells its sender whether it guessed the ETag: a writer that may not read the
    key must not learn that (S3 requires s3:GetObject too)."""
    import json

    from s3torrent.access.principals import user_arn

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": user_arn(bob.name)},
                "Action": ["s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    etag = s3.put_object(Bucket=bucket, Key="secret", Body=b"s")["ETag"]
    for guess in (etag, '"ffff"'):
        with pytest.raises(ClientError) as exc:
            bob_s3.put_object(Bucket=bucket, Key="secret", Body=b"b", IfMatch=guess)
        assert _err(exc) == ("AccessDenied", 403)
        with pytest.raises(ClientError) as exc:
            bob_s3.delete_object(Bucket=bucket, Key="secret", IfMatch=guess)
        assert _err(exc) == ("AccessDenied", 403)
    resp = bob_s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "secret", "ETag": etag}]}
    )
    assert [e["Code"] for e in resp.get("Errors", [])] == ["AccessDenied"]
    assert _body(s3, bucket, "secret") == b"s"
    # Existence alone is what If-None-Match: * reveals, and PutObject already may learn it.
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="secret", Body=b"b", IfNoneMatch="*")
    assert _err(exc) == ("PreconditionFailed", 412)
