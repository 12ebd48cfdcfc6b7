"""Audit of bucket policy evaluation on a live server, against IAM's documented semantics
(tests/unit/test_audit_policy_semantics.py holds the decision's own cases)."""

from __future__ import annotations

import json
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
