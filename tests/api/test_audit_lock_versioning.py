"""Audit of object lock with boto3 and raw requests, as S3 does it: what GET and HEAD tell
about a version's lock, the permissions a write's own lock settings need, a retention read
back and put again, and the integrity header a write that will be locked needs (PutObject
and UploadPart, by their own headers or the bucket's default retention)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.api.test_object_lock import _code, _later
from tests.conftest import UserKeys, make_client, sign_request


@pytest.fixture
def locked(s3: Any) -> str:
    name = f"alock-{os.getpid()}-{os.urandom(3).hex()}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _allow(s3: Any, bucket: str, user: UserKeys, actions: list[str]) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{user.name}"},
                "Action": actions,
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


_LOCK = ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date")
_HOLD = "x-amz-object-lock-legal-hold"


def _lock_headers_seen(client: Any, bucket: str, key: str) -> set[str]:
    seen: set[str] = set()
    for read in (client.head_object, client.get_object):
        headers = read(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]
        seen |= {h for h in headers if h.startswith("x-amz-object-lock-")}
    return seen


def test_get_and_head_show_lock_settings_only_to_who_may_read_them(
    s3: Any, bob_s3: Any, bob: UserKeys, locked: str
) -> None:
    """S3 answers x-amz-object-lock-mode and -retain-until-date only to a requester with
    s3:GetObjectRetention, and -legal-hold only with s3:GetObjectLegalHold (HeadObject's and
    GetObject's references): a reader with s3:GetObject alone learned both."""
    s3.put_object(
        Bucket=locked,
        Key="k",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(3600),
        ObjectLockLegalHoldStatus="ON",
    )
    assert _lock_headers_seen(s3, locked, "k") == {*_LOCK, _HOLD}  # the owner sees all
    _allow(s3, locked, bob, ["s3:GetObject"])
    assert _lock_headers_seen(bob_s3, locked, "k") == set()
    _allow(s3, locked, bob, ["s3:GetObject", "s3:GetObjectRetention"])
    assert _lock_headers_seen(bob_s3, locked, "k") == set(_LOCK)
    _allow(s3, locked, bob, ["s3:GetObject", "s3:GetObjectLegalHold"])
    assert _lock_headers_seen(bob_s3, locked, "k") == {_HOLD}


def _denied(call: Any) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    assert _code(exc) == ("AccessDenied", 403)


def test_a_writes_lock_settings_need_their_own_permissions(
    s3: Any, server: Any, bob: UserKeys, locked: str
) -> None:
    """S3 sets a write's own retention (x-amz-object-lock-mode and -retain-until-date) only
    for a requester with s3:PutObjectRetention, and its legal hold only with
    s3:PutObjectLegalHold, as PutObjectRetention and PutObjectLegalHold would need: a writer
    allowed s3:PutObject alone locked its objects in COMPLIANCE mode for a century, bytes
    that nobody, the bucket's owner included, could then remove."""
    bob_v4 = make_client(server.endpoint, bob.access_key, bob.secret_key, signature_version="s3v4")
    _allow(s3, locked, bob, ["s3:PutObject", "s3:GetObject"])
    s3.put_object(Bucket=locked, Key="src", Body=b"s")
    century = _later(100 * 365 * 86400)
    retention = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": century}
    hold = {"ObjectLockLegalHoldStatus": "ON"}
    source = {"Bucket": locked, "Key": "src"}
    for lock in (retention, hold):
        _denied(lambda lock=lock: bob_v4.put_object(Bucket=locked, Key="k", Body=b"x", **lock))
        _denied(lambda lock=lock: bob_v4.create_multipart_upload(Bucket=locked, Key="k", **lock))
        _denied(
            lambda lock=lock: bob_v4.copy_object(Bucket=locked, Key="k", CopySource=source, **lock)
        )
    fields = {
        "x-amz-object-lock-mode": "COMPLIANCE",
        "x-amz-object-lock-retain-until-date": century.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    form = bob_v4.generate_presigned_post(
        locked, "k", Fields=fields, Conditions=[{k: v} for k, v in fields.items()], ExpiresIn=300
    )
    r = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"x")}, timeout=10)
    assert r.status_code == 403, r.text
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=locked, Key="k")
    assert _code(exc)[1] == 404  # nothing was written
    assert not s3.list_multipart_uploads(Bucket=locked).get("Uploads")
    # Without lock headers the write is the ordinary one; with the permission, the lock is set.
    bob_v4.put_object(Bucket=locked, Key="plain", Body=b"x")
    _allow(s3, locked, bob, ["s3:PutObject", "s3:GetObject", "s3:PutObjectRetention"])
    until = _later(3600)
    bob_v4.put_object(
        Bucket=locked,
        Key="k",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    assert s3.head_object(Bucket=locked, Key="k")["ObjectLockMode"] == "GOVERNANCE"
    _denied(lambda: bob_v4.put_object(Bucket=locked, Key="k", Body=b"x", **hold))


def test_a_retention_read_back_can_be_put_again(s3: Any, locked: str) -> None:
    """What GetObjectRetention answers (and HEAD) is the version's retention exactly: a
    client that puts it back unchanged (a tool that re-applies a retention it read) is
    lengthening nothing and shortening nothing. The bucket's default retention ran from the
    write's time to the microsecond while the answers say milliseconds, so the date read
    back was earlier than the one kept, and putting it back was refused as a shortening of a
    COMPLIANCE retention."""
    s3.put_object_lock_configuration(
        Bucket=locked,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    for n in range(5):  # a write's time ends in whole milliseconds one time in a thousand
        vid = s3.put_object(Bucket=locked, Key=f"k{n}", Body=b"x")["VersionId"]
        read = s3.get_object_retention(Bucket=locked, Key=f"k{n}", VersionId=vid)["Retention"]
        s3.put_object_retention(Bucket=locked, Key=f"k{n}", VersionId=vid, Retention=read)
        again = s3.get_object_retention(Bucket=locked, Key=f"k{n}", VersionId=vid)["Retention"]
        assert again == read


def test_a_put_into_a_bucket_with_default_retention_needs_an_integrity_header(
    s3: Any, server: Any, locked: str
) -> None:
    """S3 refuses a PutObject that would be locked, by its own headers or by the bucket's
    default retention, without Content-MD5 or a checksum header (InvalidRequest; the AWS
    SDKs' issues about uploads to buckets with a default retention show it): bytes that
    cannot be replaced or removed for years are taken only with a proof of their integrity.
    A PUT that the default retention was about to lock needed none here."""
    body = b"kept for a year"
    url = f"{server.endpoint}/{locked}/k"

    def put(headers: dict[str, str]) -> requests.Response:
        signed = sign_request("PUT", url, headers=headers, body=body)
        return requests.put(url, data=body, headers=signed, timeout=10)

    assert put({}).status_code == 200  # no default retention: nothing is locked
    s3.put_object_lock_configuration(
        Bucket=locked,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    refused = put({})
    assert refused.status_code == 400 and b"<Code>InvalidRequest</Code>" in refused.content
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert put({"Content-MD5": md5}).status_code == 200
    assert s3.head_object(Bucket=locked, Key="k")["ObjectLockMode"] == "GOVERNANCE"


def test_a_part_of_an_upload_that_will_be_locked_needs_an_integrity_header(
    s3: Any, server: Any, locked: str
) -> None:
    """The same for UploadPart ('Content-MD5 OR x-amz-checksum- HTTP header is required for
    Put Part requests with Object Lock parameters', S3's answer to a part of an upload with
    lock settings, or into a bucket with a default retention)."""
    body = b"part"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()

    def put_part(key: str, upload_id: str, headers: dict[str, str]) -> int:
        url = f"{server.endpoint}/{locked}/{key}?partNumber=1&uploadId={upload_id}"
        signed = sign_request("PUT", url, headers=headers, body=body)
        return requests.put(url, data=body, headers=signed, timeout=10).status_code

    plain = s3.create_multipart_upload(Bucket=locked, Key="plain")["UploadId"]
    assert put_part("plain", plain, {}) == 200
    held = s3.create_multipart_upload(Bucket=locked, Key="held", ObjectLockLegalHoldStatus="ON")
    assert put_part("held", held["UploadId"], {}) == 400
    assert put_part("held", held["UploadId"], {"Content-MD5": md5}) == 200
    s3.put_object_lock_configuration(
        Bucket=locked,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    assert put_part("plain", plain, {}) == 400
    assert put_part("plain", plain, {"Content-MD5": md5}) == 200
