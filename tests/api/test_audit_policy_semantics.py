"""Audit of bucket policy evaluation on a live server, against IAM's documented semantics
(tests/unit/test_audit_policy_semantics.py holds the decision's own cases)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access import ROOT_ARN, user_arn
from tests.conftest import LiveServer, UserKeys


def _anon_get(server: LiveServer, bucket: str, key: str) -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10).status_code


def _status(call: Any) -> int:
    try:
        call()
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


@pytest.mark.parametrize("spared", [[ROOT_ARN], ["user"]], ids=["account", "user"])
def test_a_not_principal_deny_spares_only_a_user_listed_with_its_account(
    server: LiveServer, s3: Any, bucket: str, bob: UserKeys, bob_s3: Any, spared: list[str]
) -> None:
    """Readable by all, except a Deny on everyone NotPrincipal lists. IAM evaluates a user's
    account and then the user: only a user listed with its account is spared. Before, a
    Deny listing only the account spared every user, one listing only bob spared bob."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    listed = [user_arn(bob.name) if who == "user" else who for who in spared]
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        },
        {
            "Effect": "Deny",
            "NotPrincipal": {"AWS": listed},
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        },
    ]
    policy = {"Version": "2012-10-17", "Statement": statements}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert _status(lambda: bob_s3.get_object(Bucket=bucket, Key="k")) == 403
    assert _anon_get(server, bucket, "k") == 403

    statements[1]["NotPrincipal"] = {"AWS": [user_arn(bob.name), ROOT_ARN]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert bob_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert _anon_get(server, bucket, "k") == 403


def test_a_retention_cap_in_a_policy_holds_for_a_date_in_basic_form(
    server: LiveServer, s3: Any, bob: UserKeys, bob_s3: Any
) -> None:
    """A policy lets bob write with retention, but denies a retain-until date past 2030.
    Before, bob sent `x-amz-object-lock-retain-until-date: 20991231`: the Deny read it as
    epoch seconds (1970) and did not apply, the operation read it as 2099-12-31 and locked
    the version until then. Now the operation refuses a date the policy reads otherwise."""
    name = f"lockcap-{bob.name}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    resource = f"arn:aws:s3:::{name}/*"
    allow = {
        "Effect": "Allow",
        "Principal": {"AWS": user_arn(bob.name)},
        "Action": ["s3:PutObject", "s3:PutObjectRetention"],
        "Resource": resource,
    }
    cap = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": resource,
        "Condition": {
            "DateGreaterThan": {"s3:object-lock-retain-until-date": "2030-01-01T00:00:00Z"}
        },
    }
    policy = {"Version": "2012-10-17", "Statement": [allow, cap]}
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))

    def put(until: str) -> int:
        def headers(request: Any, **_: Any) -> None:
            request.headers["x-amz-object-lock-mode"] = "GOVERNANCE"
            request.headers["x-amz-object-lock-retain-until-date"] = until

        event = "before-sign.s3.PutObject"
        bob_s3.meta.events.register(event, headers)
        try:
            return _status(lambda: bob_s3.put_object(Bucket=name, Key="k", Body=b"x"))
        finally:
            bob_s3.meta.events.unregister(event, headers)

    assert put("2099-12-31T00:00:00Z") == 403
    assert put("20991231") == 400
    assert put("2029-12-31T00:00:00Z") == 200
    assert not [
        v
        for v in s3.list_object_versions(Bucket=name).get("Versions", [])
        if s3.get_object_retention(Bucket=name, Key="k", VersionId=v["VersionId"])["Retention"][
            "RetainUntilDate"
        ].year
        > 2030
    ]


@pytest.mark.parametrize("sent", ["/{b}/secret/k", "{b}/%73ecret/k"])
def test_a_deny_on_a_copy_source_holds_however_the_source_is_written(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any, sent: str
) -> None:
    """bob may read and write the bucket, but a Deny forbids copying out of secret/ (the
    S3 user guide's s3:x-amz-copy-source example). Before, a copy source with a leading
    "/" or a percent-encoded character slipped past the Deny and copied the object."""
    s3.put_object(Bucket=bucket, Key="secret/k", Body=b"secret")
    resource = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": user_arn(bob.name)},
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": resource,
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": resource,
                "Condition": {"StringLike": {"s3:x-amz-copy-source": f"{bucket}/secret/*"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    header = sent.format(b=bucket)

    def copy_source(request: Any, **_: Any) -> None:
        del request.headers["x-amz-copy-source"]  # an email.Message: setting appends
        request.headers["x-amz-copy-source"] = header

    event = "before-sign.s3.CopyObject"
    bob_s3.meta.events.register(event, copy_source)
    try:
        status = _status(
            lambda: bob_s3.copy_object(Bucket=bucket, Key="out", CopySource=f"{bucket}/other")
        )
    finally:
        bob_s3.meta.events.unregister(event, copy_source)
    assert status == 403
    assert _status(lambda: s3.head_object(Bucket=bucket, Key="out")) == 404
    s3.put_object(Bucket=bucket, Key="public/k", Body=b"p")
    bob_s3.copy_object(Bucket=bucket, Key="out", CopySource=f"/{bucket}/public/k")
    assert s3.get_object(Bucket=bucket, Key="out")["Body"].read() == b"p"


def test_a_deny_on_replacing_metadata_holds_in_any_case(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """bob may copy, but a Deny forbids copies that replace the metadata. Before,
    MetadataDirective "replace" (which the copy obeys as REPLACE) passed the Deny."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"s", Metadata={"origin": "kept"})
    resource = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": user_arn(bob.name)},
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": resource,
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": resource,
                "Condition": {"StringEquals": {"s3:x-amz-metadata-directive": "REPLACE"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    for directive in ("REPLACE", "replace"):
        copy = partial(
            bob_s3.copy_object,
            Bucket=bucket,
            Key="dst",
            CopySource=f"{bucket}/src",
            MetadataDirective=directive,
        )
        assert _status(copy) == 403
    assert _status(lambda: s3.head_object(Bucket=bucket, Key="dst")) == 404
    bob_s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    assert s3.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"origin": "kept"}
