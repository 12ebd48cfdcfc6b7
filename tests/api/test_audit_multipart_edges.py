"""Multipart uploads at their edges, found in the 2026-12 audit: who may abort an upload
and list its parts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, UserKeys, add_user, make_client


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _policy(s3: Any, bucket: str, statements: list[dict[str, Any]]) -> None:
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements})
    )


def _statement(effect: str, user: UserKeys, actions: list[str], bucket: str) -> dict[str, Any]:
    return {
        "Effect": effect,
        "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{user.name}"},
        "Action": actions,
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }


@pytest.fixture(scope="module")
def carol(server: LiveServer) -> UserKeys:
    return add_user(server, "carol-mp-edges")


@pytest.mark.parametrize("ownership", ["BucketOwnerEnforced", "ObjectWriter"])
def test_the_initiator_may_list_and_abort_its_own_upload(
    s3: Any, server: LiveServer, bob: UserKeys, carol: UserKeys, bucket: str, ownership: str
) -> None:
    """S3 (Multipart upload API and permissions): by default the initiator of an upload may
    list its parts and abort it, as the bucket owner may; others need
    s3:ListMultipartUploadParts and s3:AbortMultipartUpload. A user granted s3:PutObject
    alone could start uploads it could neither list nor abort."""
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": ownership}]}
    )
    _policy(s3, bucket, [_statement("Allow", u, ["s3:PutObject"], bucket) for u in (bob, carol)])
    bob_s3 = make_client(server.endpoint, bob.access_key, bob.secret_key)
    carol_s3 = make_client(server.endpoint, carol.access_key, carol.secret_key)
    uid = bob_s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    bob_s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"bob")
    # Another user with the same s3:PutObject is not the initiator.
    for call in (
        lambda: carol_s3.list_parts(Bucket=bucket, Key="k", UploadId=uid),
        lambda: carol_s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDenied"
    listed = bob_s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1]
    # Initiator names who started the upload; Owner whom the object will belong to.
    assert listed["Initiator"]["ID"] != listed["Owner"]["ID"] or ownership == "ObjectWriter"
    root_listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["Initiator"]["ID"] for u in root_listed] == [listed["Initiator"]["ID"]]
    bob_s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert _code(exc) == "NoSuchUpload"


def test_an_explicit_deny_binds_the_initiator_too(
    s3: Any, server: LiveServer, bob: UserKeys, bucket: str
) -> None:
    _policy(
        s3,
        bucket,
        [
            _statement("Allow", bob, ["s3:PutObject"], bucket),
            _statement(
                "Deny", bob, ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], bucket
            ),
        ],
    )
    bob_s3 = make_client(server.endpoint, bob.access_key, bob.secret_key)
    uid = bob_s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for call in (
        lambda: bob_s3.list_parts(Bucket=bucket, Key="k", UploadId=uid),
        lambda: bob_s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDenied"
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_the_initiator_mark_does_not_reach_the_object(
    s3: Any, server: LiveServer, bob: UserKeys, bucket: str
) -> None:
    _policy(s3, bucket, [_statement("Allow", bob, ["s3:PutObject", "s3:GetObject"], bucket)])
    bob_s3 = make_client(server.endpoint, bob.access_key, bob.secret_key)
    uid = bob_s3.create_multipart_upload(Bucket=bucket, Key="k", Metadata={"m": "1"})["UploadId"]
    etag = bob_s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x")["ETag"]
    bob_s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["Metadata"] == {"m": "1"}
    assert not [h for h in head["ResponseMetadata"]["HTTPHeaders"] if "initiator" in h.lower()]


@pytest.mark.parametrize("sent", ["1_0", "+10", "10.0"])
def test_a_malformed_expected_object_size_is_refused(s3: Any, bucket: str, sent: str) -> None:
    """x-amz-mp-object-size is a size: ASCII digits. int() also read "1_0" and "+10" as 10,
    so a malformed check passed as the right one."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key="sized")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="sized", UploadId=uid, PartNumber=1, Body=b"x" * 10)[
        "ETag"
    ]

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-amz-mp-object-size"] = sent

    s3.meta.events.register("before-sign.s3.CompleteMultipartUpload", add_header)
    try:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key="sized",
                UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            )
    finally:
        s3.meta.events.unregister("before-sign.s3.CompleteMultipartUpload", add_header)
    assert _code(exc) == "InvalidRequest"
    assert [
        p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="sized", UploadId=uid)["Parts"]
    ] == [1]
