"""Object lock with boto3: buckets created with it, default retention, per-version retention
(COMPLIANCE only lengthened; GOVERNANCE bypassed only with s3:BypassGovernanceRetention),
legal holds, the lock headers of writes; a locked version cannot be removed by anyone."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import UserKeys, sign_request


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture
def locked(s3: Any) -> str:
    name = f"lock-{os.getpid()}-{os.urandom(3).hex()}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_bucket_with_object_lock_is_versioned_for_good(s3: Any, locked: str) -> None:
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={"Status": "Suspended"})
    assert _code(exc) == ("InvalidBucketState", 409)
    conf = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert conf == {"ObjectLockEnabled": "Enabled"}


def test_unlocked_bucket_has_no_configuration(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert _code(exc) == ("ObjectLockConfigurationNotFoundError", 404)
    with pytest.raises(ClientError) as exc:
        s3.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
        )
    assert _code(exc) == ("InvalidBucketState", 409)  # versioning is not enabled


def test_default_retention_applies_to_new_versions(s3: Any, locked: str) -> None:
    s3.put_object_lock_configuration(
        Bucket=locked,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    conf = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert conf["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"x")["VersionId"]
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1)
    retention = s3.get_object_retention(Bucket=locked, Key="k", VersionId=vid)["Retention"]
    assert retention["Mode"] == "GOVERNANCE"


def test_compliance_version_cannot_be_deleted_by_root(s3: Any, locked: str) -> None:
    vid = s3.put_object(
        Bucket=locked,
        Key="k",
        Body=b"keep",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=_later(3600),
    )["VersionId"]
    for bypass in (False, True):
        with pytest.raises(ClientError) as exc:
            s3.delete_object(
                Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=bypass
            )
        assert _code(exc) == ("AccessDenied", 403)
    out = s3.delete_objects(Bucket=locked, Delete={"Objects": [{"Key": "k", "VersionId": vid}]})
    assert out["Errors"][0]["Code"] == "AccessDenied"
    # A delete marker is allowed: the locked version stays.
    assert s3.delete_object(Bucket=locked, Key="k")["DeleteMarker"] is True
    assert s3.get_object(Bucket=locked, Key="k", VersionId=vid)["Body"].read() == b"keep"
    # COMPLIANCE: lengthened yes; shortened or turned to GOVERNANCE never.
    s3.put_object_retention(
        Bucket=locked,
        Key="k",
        VersionId=vid,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": _later(7200)},
    )
    for mode, seconds in (("COMPLIANCE", 1800), ("GOVERNANCE", 9000)):
        with pytest.raises(ClientError) as exc:
            s3.put_object_retention(
                Bucket=locked,
                Key="k",
                VersionId=vid,
                Retention={"Mode": mode, "RetainUntilDate": _later(seconds)},
                BypassGovernanceRetention=True,
            )
        assert _code(exc) == ("AccessDenied", 403)


def test_governance_needs_the_bypass_permission(
    s3: Any, bob_s3: Any, bob: UserKeys, locked: str
) -> None:
    vid = s3.put_object(
        Bucket=locked,
        Key="g",
        Body=b"gov",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(3600),
    )["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="g", VersionId=vid)
    assert _code(exc) == ("AccessDenied", 403)
    bob_arn = f"arn:aws:iam::000000000000:user/{bob.name}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": bob_arn},
                "Action": ["s3:DeleteObjectVersion", "s3:GetObjectVersion"],
                "Resource": f"arn:aws:s3:::{locked}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps(policy))
    with pytest.raises(ClientError) as exc:
        bob_s3.delete_object(Bucket=locked, Key="g", VersionId=vid, BypassGovernanceRetention=True)
    assert _code(exc) == ("AccessDenied", 403)
    # Shortening GOVERNANCE needs the bypass too.
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(
            Bucket=locked,
            Key="g",
            VersionId=vid,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _later(60)},
        )
    assert _code(exc) == ("AccessDenied", 403)
    s3.delete_object(Bucket=locked, Key="g", VersionId=vid, BypassGovernanceRetention=True)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=locked, Key="g", VersionId=vid)
    assert _code(exc)[1] == 404


def test_legal_hold(s3: Any, locked: str) -> None:
    vid = s3.put_object(Bucket=locked, Key="h", Body=b"held", ObjectLockLegalHoldStatus="ON")[
        "VersionId"
    ]
    assert s3.get_object_legal_hold(Bucket=locked, Key="h")["LegalHold"]["Status"] == "ON"
    assert s3.head_object(Bucket=locked, Key="h")["ObjectLockLegalHoldStatus"] == "ON"
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=locked, Key="h", VersionId=vid, BypassGovernanceRetention=True)
    assert _code(exc) == ("AccessDenied", 403)
    s3.put_object_legal_hold(Bucket=locked, Key="h", VersionId=vid, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="h")["LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket=locked, Key="h", VersionId=vid)


def test_multipart_and_copy_take_lock_headers(s3: Any, locked: str) -> None:
    until = _later(3600)
    up = s3.create_multipart_upload(
        Bucket=locked, Key="mp", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )["UploadId"]
    part = s3.upload_part(Bucket=locked, Key="mp", UploadId=up, PartNumber=1, Body=b"p")
    done = s3.complete_multipart_upload(
        Bucket=locked,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    head = s3.head_object(Bucket=locked, Key="mp", VersionId=done["VersionId"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert "x-lock-mode" not in {h.lower() for h in head["ResponseMetadata"]["HTTPHeaders"]}
    s3.copy_object(
        Bucket=locked,
        Key="cp",
        CopySource={"Bucket": locked, "Key": "mp"},
        ObjectLockLegalHoldStatus="ON",
    )
    assert s3.get_object_legal_hold(Bucket=locked, Key="cp")["LegalHold"]["Status"] == "ON"


def test_lock_requests_need_an_integrity_header(s3: Any, locked: str, server: Any) -> None:
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    body = b"<LegalHold><Status>ON</Status></LegalHold>"
    url = f"{server.endpoint}/{locked}/k?legal-hold="
    resp = requests.put(url, data=body, headers=sign_request("PUT", url, body=body), timeout=5)
    assert resp.status_code == 400 and b"InvalidRequest" in resp.content
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = {"Content-MD5": md5}
    signed = sign_request("PUT", url, headers=headers, body=body)
    assert requests.put(url, data=body, headers=signed, timeout=5).status_code == 200


def test_lock_headers_on_an_unlocked_bucket_are_refused(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
