"""Object and bucket tagging, as boto3 and the AWS CLI use it, with S3's limits and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.api.test_cli_tools import aws, ok
from tests.conftest import LiveServer


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _tagset(pairs: dict[str, str]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs.items()]}


def test_object_tags_put_get_delete_and_count(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="project=alpha&team=web%20ops")
    got = s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]
    assert got == [{"Key": "project", "Value": "alpha"}, {"Key": "team", "Value": "web ops"}]
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tagset({"stage": "prod"}))
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "stage", "Value": "prod"}
    ]
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    head = s3.head_object(Bucket=bucket, Key="k")
    assert "x-amz-tagging-count" not in head["ResponseMetadata"]["HTTPHeaders"]
    # An overwrite without tags has none.
    s3.put_object(Bucket=bucket, Key="k", Body=b"y", Tagging="a=1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"z")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []


def test_tags_follow_multipart_and_copy_directives(s3: Any, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="kind=big")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="mp")["TagSet"] == [
        {"Key": "kind", "Value": "big"}
    ]
    src = {"Bucket": bucket, "Key": "mp"}
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=src)
    assert s3.get_object_tagging(Bucket=bucket, Key="copied")["TagSet"] == [
        {"Key": "kind", "Value": "big"}
    ]
    s3.copy_object(
        Bucket=bucket, Key="replaced", CopySource=src, TaggingDirective="REPLACE", Tagging="n=2"
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="replaced")["TagSet"] == [
        {"Key": "n", "Value": "2"}
    ]


@pytest.mark.parametrize(
    ("tagging", "code"),
    [
        ("&".join(f"k{i}=v" for i in range(11)), "BadRequest"),
        ("k" * 129 + "=v", "InvalidTag"),
        ("k=" + "v" * 257, "InvalidTag"),
        ("aws:reserved=v", "InvalidTag"),
        ("k=1&k=2", "InvalidTag"),
        ("bad%3Cchar=v", "InvalidTag"),
    ],
)
def test_tags_beyond_s3_limits_are_refused(s3: Any, bucket: str, tagging: str, code: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging=tagging)
    assert _code(exc) == (code, 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="t")


def test_bucket_tags_put_get_delete(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _code(exc) == ("NoSuchTagSet", 404)
    s3.put_bucket_tagging(Bucket=bucket, Tagging=_tagset({"cost": "team-a"}))
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "cost", "Value": "team-a"}]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_tagging(Bucket=bucket, Tagging=_tagset({f"k{i}": "v" for i in range(51)}))
    assert _code(exc)[1] == 400
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket=bucket)


def test_other_users_cannot_tag_or_read_tags(s3: Any, bob_s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="secret=1", ACL="public-read")
    for call in (
        lambda: bob_s3.get_object_tagging(Bucket=bucket, Key="k"),
        lambda: bob_s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tagset({"a": "b"})),
        lambda: bob_s3.delete_object_tagging(Bucket=bucket, Key="k"),
        lambda: bob_s3.put_bucket_tagging(Bucket=bucket, Tagging=_tagset({"a": "b"})),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == ("AccessDenied", 403)
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "secret", "Value": "1"}
    ]


def test_policy_tag_condition_keys(s3: Any, bob_s3: Any, bob: Any, bucket: str) -> None:
    """s3:ExistingObjectTag decides reads, s3:RequestObjectTag decides writes."""
    bob_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"
    arn = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": bob_arn},
                "Action": "s3:GetObject",
                "Resource": arn,
                "Condition": {"StringEquals": {"s3:ExistingObjectTag/share": "yes"}},
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": bob_arn},
                # A write's tags need s3:PutObjectTagging too (PutObject's reference).
                "Action": ["s3:PutObject", "s3:PutObjectTagging"],
                "Resource": arn,
                "Condition": {"StringEquals": {"s3:RequestObjectTag/owner": "bob"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3.put_object(Bucket=bucket, Key="shared", Body=b"s", Tagging="share=yes")
    s3.put_object(Bucket=bucket, Key="kept", Body=b"k", Tagging="share=no")
    assert bob_s3.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"s"
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object(Bucket=bucket, Key="kept")
    assert _code(exc) == ("AccessDenied", 403)
    bob_s3.put_object(Bucket=bucket, Key="by-bob", Body=b"b", Tagging="owner=bob")
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="by-bob2", Body=b"b", Tagging="owner=eve")
    assert _code(exc) == ("AccessDenied", 403)


def test_aws_cli_tagging(server: LiveServer, bucket: str, tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("hello")
    ok(
        aws(
            server,
            tmp_path,
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            "c",
            "--body",
            str(f),
            "--tagging",
            "a=1&b=2",
        )
    )
    out = json.loads(
        ok(aws(server, tmp_path, "s3api", "get-object-tagging", "--bucket", bucket, "--key", "c"))
    )
    assert out["TagSet"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    ok(
        aws(
            server,
            tmp_path,
            "s3api",
            "put-object-tagging",
            "--bucket",
            bucket,
            "--key",
            "c",
            "--tagging",
            "TagSet=[{Key=z,Value=9}]",
        )
    )
    out = json.loads(
        ok(aws(server, tmp_path, "s3api", "get-object-tagging", "--bucket", bucket, "--key", "c"))
    )
    assert out["TagSet"] == [{"Key": "z", "Value": "9"}]


def test_a_deny_on_an_object_tag_holds_for_a_copy_of_it(
    s3: Any, bob_s3: Any, bob: Any, bucket: str
) -> None:
    """CopyObject reads its source as GetObject, decided on the source's own tags. Until
    2026-12-07 the copy's decision took the tags of the request's own object (none): a
    user denied reading what is tagged confidential copied it, untagged, and read the copy."""
    bob_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"
    arn = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": bob_arn},
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": arn,
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": bob_arn},
                "Action": "s3:GetObject",
                "Resource": arn,
                "Condition": {
                    "StringEquals": {"s3:ExistingObjectTag/classification": "confidential"}
                },
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s", Tagging="classification=confidential")
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object(Bucket=bucket, Key="secret")
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        bob_s3.copy_object(
            Bucket=bucket,
            Key="laundered",
            CopySource={"Bucket": bucket, "Key": "secret"},
            TaggingDirective="REPLACE",
        )
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="laundered")
