"""Bucket policies and Block Public Access against a live server, with two users and none."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.conftest import LiveServer


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _anon_get(server: LiveServer, bucket: str, key: str) -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10).status_code


def _policy(
    bucket: str,
    effect: str = "Allow",
    principal: Any = "*",
    action: str = "s3:GetObject",
    resource: str = "/*",
) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": f"{effect}Read",
                    "Effect": effect,
                    "Principal": principal,
                    "Action": action,
                    "Resource": f"arn:aws:s3:::{bucket}{resource}",
                }
            ],
        }
    )


def test_policy_put_get_delete(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert _code(exc) == "NoSuchBucketPolicy"
    text = _policy(bucket).replace(",", ",  ")  # odd spacing: GET returns the exact text
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == text
    resp = s3.delete_bucket_policy(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert _code(exc) == "NoSuchBucketPolicy"
    s3.delete_bucket_policy(Bucket=bucket)  # deleting nothing is fine too


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"Version": "2012-10-17"}',
        '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        ' "Resource": "arn:aws:s3:::some-other-bucket/*"}]}',
        '{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject",'
        ' "Resource": "arn:aws:s3:::BUCKET/*"}]}',
    ],
)
def test_malformed_policies_are_refused(s3: Any, bucket: str, text: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=text.replace("BUCKET", bucket))
    assert _code(exc) == "MalformedPolicy"


def test_a_misspelt_action_is_refused_and_nothing_is_stored(s3: Any, bucket: str) -> None:
    """A Deny on s3:GetObjectTorent would deny nothing: S3 refuses the policy, so do we."""
    for field, action in (("Action", "s3:GetObjectTorent"), ("NotAction", "s3:Frobnicate")):
        statement = {
            "Effect": "Deny",
            "Principal": "*",
            field: ["s3:GetObject", action],
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
        text = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        with pytest.raises(ClientError) as exc:
            s3.put_bucket_policy(Bucket=bucket, Policy=text)
        assert _code(exc) == "MalformedPolicy"
        assert action in exc.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as exc:
            s3.get_bucket_policy(Bucket=bucket)
        assert _code(exc) == "NoSuchBucketPolicy"


@pytest.mark.parametrize(
    ("operator", "key", "value", "fixed_key"),
    [
        ("StringNotEquals", "s3:x-amz-server-side-encrption", "AES256", None),
        ("NotIpAddress", "aws:SourceIP4", "10.0.0.0/8", "aws:SourceIp"),
    ],
)
def test_a_misspelt_condition_key_is_refused(
    s3: Any, bucket: str, operator: str, key: str, value: str, fixed_key: str | None
) -> None:
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {operator: {key: value}},
    }
    text = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert _code(exc) == "MalformedPolicy"
    assert "invalid condition key" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert _code(exc) == "NoSuchBucketPolicy"
    fixed = text.replace(key, fixed_key) if fixed_key else text.replace("encrption", "encryption")
    s3.put_bucket_policy(Bucket=bucket, Policy=fixed)
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == fixed


@pytest.mark.parametrize(
    "action",
    [
        "s3:getobjecttorrent",  # any case
        "s3:Get*",  # a wildcard matches what it matches
        "s3:*",
        "s3:PutReplicationConfiguration",  # defined by S3, though not served here
        "s3:GetObjectVersion?orrent",
    ],
)
def test_actions_s3_defines_are_accepted(s3: Any, bucket: str, action: str) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, action=action))
    assert action in s3.get_bucket_policy(Bucket=bucket)["Policy"]


def test_public_policy_makes_objects_readable(
    s3: Any, bob_s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"public via policy")
    assert _anon_get(server, bucket, "a/b.txt") == 403
    with pytest.raises(ClientError):
        bob_s3.get_object(Bucket=bucket, Key="a/b.txt")
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket))
    assert _anon_get(server, bucket, "a/b.txt") == 200
    assert bob_s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"public via policy"
    # GetObject only: no listing, no writes.
    assert requests.get(f"{server.endpoint}/{bucket}", timeout=10).status_code == 403
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert _code(exc) == "AccessDenied"
    s3.delete_bucket_policy(Bucket=bucket)
    assert _anon_get(server, bucket, "a/b.txt") == 403


def test_policy_grants_named_user(s3: Any, bob_s3: Any, bob: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    bob_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, principal={"AWS": bob_arn}))
    assert bob_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_explicit_deny_beats_acl_grant(
    s3: Any, bob_s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    assert _anon_get(server, bucket, "k") == 200
    assert bob_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, effect="Deny"))
    assert _anon_get(server, bucket, "k") == 403
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object(Bucket=bucket, Key="k")
    assert _code(exc) == "AccessDenied"


def test_only_the_bucket_owner_manages_policies(s3: Any, bob_s3: Any, bucket: str) -> None:
    for call in (
        lambda: bob_s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket)),
        lambda: bob_s3.get_bucket_policy(Bucket=bucket),
        lambda: bob_s3.get_public_access_block(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDenied"


def test_public_access_block_put_get_delete(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_public_access_block(Bucket=bucket)
    assert _code(exc) == "NoSuchPublicAccessBlockConfiguration"
    config = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False,
    }
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=config)
    got = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == config
    resp = s3.delete_public_access_block(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_public_access_block(Bucket=bucket)
    assert _code(exc) == "NoSuchPublicAccessBlockConfiguration"


def test_block_public_policy_refuses_public_policy(s3: Any, bob: Any, bucket: str) -> None:
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicPolicy": True}
    )
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket))
    assert _code(exc) == "AccessDenied"
    bob_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, principal={"AWS": bob_arn}))


def test_restrict_public_buckets_closes_policy_reads(
    s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket))
    assert _anon_get(server, bucket, "k") == 200
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True}
    )
    assert _anon_get(server, bucket, "k") == 403
    s3.delete_public_access_block(Bucket=bucket)
    assert _anon_get(server, bucket, "k") == 200


def test_ignore_public_acls_closes_acl_reads(s3: Any, server: LiveServer, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    assert _anon_get(server, bucket, "k") == 200
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"IgnorePublicAcls": True}
    )
    assert _anon_get(server, bucket, "k") == 403
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"IgnorePublicAcls": False}
    )
    assert _anon_get(server, bucket, "k") == 200


def test_malformed_public_access_block_is_refused(s3: Any, server: LiveServer, bucket: str) -> None:
    from tests.conftest import sign_request

    url = f"{server.endpoint}/{bucket}?publicAccessBlock"
    body = (
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls>"
        b"</PublicAccessBlockConfiguration>"
    )
    headers = sign_request("PUT", url, body=body)
    r = requests.put(url, data=body, headers=headers, timeout=10)
    assert r.status_code == 400
    assert b"<Code>MalformedXML</Code>" in r.content


def test_policy_conditions_see_the_grant_and_storage_class_headers(
    s3: Any, bob_s3: Any, bob: Any, bucket: str
) -> None:
    """s3:x-amz-grant-* and s3:x-amz-storage-class are filled from the (signed) headers."""
    bob_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"
    arn = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": bob_arn},
                "Action": "s3:PutObject",
                "Resource": arn,
            },
            {
                "Sid": "NoGrants",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": arn,
                "Condition": {"Null": {"s3:x-amz-grant-read": "false"}},
            },
            {
                "Sid": "OnlyStandard",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": arn,
                "Condition": {"StringEquals": {"s3:x-amz-storage-class": "REDUCED_REDUNDANCY"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    bob_s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="granted", Body=b"x", GrantRead=f'id="{"a" * 64}"')
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="rr", Body=b"x", StorageClass="REDUCED_REDUNDANCY")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


def test_policy_status_says_whether_the_policy_is_public(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError):
        s3.get_bucket_policy_status(Bucket=bucket)  # no policy: S3 answers NoSuchBucketPolicy
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": False,
            "IgnorePublicAcls": False,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy(bucket, principal={"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}),
    )
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
