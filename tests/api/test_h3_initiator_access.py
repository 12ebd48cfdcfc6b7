"""The multipart initiator's rights (S3, "Multipart upload API and permissions": the
initiator may list the parts of its own upload and abort it, unless an explicit Deny
applies) are a fact the one access decision is asked with, not a second check after it
refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from s3torrent.access import (
    ANONYMOUS,
    AccessFacts,
    Owner,
    Principal,
    RequestContext,
    Resource,
    canned_acl,
    decide,
    parse_policy,
)
from tests.conftest import LiveServer, UserKeys, add_user, make_client

OWNER_ID, BOB_ID, CAROL_ID = "a" * 64, "b" * 64, "c" * 64
BOB = Principal.user(BOB_ID, "bob")
CAROL = Principal.user(CAROL_ID, "carol")
NOW = datetime(2026, 12, 8, tzinfo=UTC)
_OWNER = Owner(OWNER_ID, "owner")
_FACTS = AccessFacts(_OWNER, canned_acl("private", owner=_OWNER, bucket_owner=_OWNER))
_UPLOAD_ACTIONS = ("s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


def _asked(principal: Principal, action: str, initiator: str | None, facts: AccessFacts) -> bool:
    ctx = RequestContext(NOW, upload_initiator=initiator)
    return decide(principal, action, Resource("b", "k"), facts, ctx).allowed


@pytest.mark.parametrize("action", _UPLOAD_ACTIONS)
def test_the_decision_knows_the_initiator(action: str) -> None:
    assert _asked(BOB, action, BOB_ID, _FACTS)
    assert not _asked(CAROL, action, BOB_ID, _FACTS)
    assert not _asked(BOB, action, None, _FACTS)
    assert not _asked(ANONYMOUS, action, None, _FACTS)
    # The initiator's right is to its upload alone: nothing else it names.
    assert not _asked(BOB, "s3:PutObject", BOB_ID, _FACTS)
    assert not _asked(BOB, "s3:GetObject", BOB_ID, _FACTS)


@pytest.mark.parametrize("action", _UPLOAD_ACTIONS)
def test_an_explicit_deny_binds_the_initiator_in_the_decision(action: str) -> None:
    policy = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*MultipartUpload*",
                        "Resource": "arn:aws:s3:::b/*",
                    }
                ],
            }
        ),
        bucket="b",
        strict=False,
    )
    facts = AccessFacts(_FACTS.bucket_owner, _FACTS.bucket_acl, policy=policy)
    ctx = RequestContext(NOW, upload_initiator=BOB_ID)
    decision = decide(BOB, action, Resource("b", "k"), facts, ctx)
    assert not decision.allowed and decision.explicit_deny


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _put_policy(s3: Any, bucket: str, statements: list[dict[str, Any]]) -> None:
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements})
    )


def _user(name: str) -> dict[str, str]:
    return {"AWS": f"arn:aws:iam::000000000000:user/{name}"}


@pytest.fixture(scope="module")
def dave(server: LiveServer) -> UserKeys:
    return add_user(server, "dave-h3-initiator")


def _refused(call: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call()
    return _code(exc)


def test_others_and_anonymous_callers_may_not_list_or_abort_an_upload(
    s3: Any, server: LiveServer, bob: UserKeys, dave: UserKeys, bucket: str
) -> None:
    """Dave may write to the bucket too, and the bucket is public-read: neither makes him,
    or an anonymous caller, the initiator of Bob's upload."""
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    _put_policy(
        s3,
        bucket,
        [
            {
                "Effect": "Allow",
                "Principal": _user(u.name),
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
            for u in (bob, dave)
        ],
    )
    bob_s3 = make_client(server.endpoint, bob.access_key, bob.secret_key)
    dave_s3 = make_client(server.endpoint, dave.access_key, dave.secret_key)
    anon = make_client(server.endpoint, signature_version=UNSIGNED)
    uid = bob_s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    bob_s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"bob")
    # Dave's own upload of the same key makes him the initiator of that one, not of Bob's.
    dave_uid = dave_s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for client in (dave_s3, anon):
        assert _refused(lambda c=client: c.list_parts(Bucket=bucket, Key="k", UploadId=uid)) == (
            "AccessDenied"
        )
        assert _refused(
            lambda c=client: c.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
        ) == ("AccessDenied")
    # Bob's upload id named under another key is no upload Bob may act on there.
    assert _refused(lambda: bob_s3.list_parts(Bucket=bucket, Key="other", UploadId=uid)) in (
        "AccessDenied",
        "NoSuchUpload",
    )
    listed = bob_s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1]
    assert dave_s3.list_parts(Bucket=bucket, Key="k", UploadId=dave_uid).get("Parts", []) == []
    dave_s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=dave_uid)
    bob_s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_deny_on_everyone_binds_the_initiator(
    s3: Any, server: LiveServer, bob: UserKeys, bucket: str
) -> None:
    """A Deny naming everyone (not the initiator by name) binds the initiator as well."""
    _put_policy(
        s3,
        bucket,
        [
            {
                "Effect": "Allow",
                "Principal": _user(bob.name),
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringNotEquals": {"aws:username": "nobody-at-all"}},
            },
        ],
    )
    bob_s3 = make_client(server.endpoint, bob.access_key, bob.secret_key)
    uid = bob_s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    assert _refused(lambda: bob_s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)) == (
        "AccessDenied"
    )
    assert _refused(
        lambda: bob_s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    ) == ("AccessDenied")
    s3.delete_bucket_policy(Bucket=bucket)
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
