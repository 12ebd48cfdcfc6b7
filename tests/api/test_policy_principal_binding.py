"""A bucket policy's user ARNs name the users who had those names when it was stored, as
IAM binds a principal to a user's unique id: a user removed and created again under the
same name is a stranger to it, and a name no user has is refused (MalformedPolicy)."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from s3torrent.access.facts import context, may
from s3torrent.access.principals import Principal
from s3torrent.store.rows import POLICY_USERS, Bucket
from tests.conftest import LiveServer, add_user, make_client


def _read_policy(bucket: str, name: str, effect: str = "Allow") -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": effect,
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{name}"},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
    )


def _code(call: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call()
    return str(exc.value.response["Error"]["Code"])


def test_a_user_created_again_under_the_name_is_not_the_one_the_policy_named(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    name = f"erin{os.getpid()}"
    first = add_user(server, name)
    s3.put_object(Bucket=bucket, Key="k", Body=b"for the first erin")
    s3.put_bucket_policy(Bucket=bucket, Policy=_read_policy(bucket, name))
    erin = make_client(server.endpoint, first.access_key, first.secret_key)
    assert erin.get_object(Bucket=bucket, Key="k")["Body"].read() == b"for the first erin"

    assert server.cli("user", "remove", name).returncode == 0
    second = add_user(server, name)
    newcomer = make_client(server.endpoint, second.access_key, second.secret_key)
    # Before: the newcomer read the object the policy gave the first erin.
    deadline = time.monotonic() + 10
    while True:
        code = _code(lambda: newcomer.get_object(Bucket=bucket, Key="k"))
        if code != "InvalidAccessKeyId" or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the new keys are read by the server at their first use
    assert code == "AccessDenied"

    # Stored again, the policy names the erin there is now.
    s3.put_bucket_policy(Bucket=bucket, Policy=_read_policy(bucket, name))
    assert newcomer.get_object(Bucket=bucket, Key="k")["Body"].read() == b"for the first erin"


def test_a_policy_naming_no_user_is_malformed(s3: Any, bucket: str) -> None:
    # Before: stored, and given to whoever would later be created under the name.
    ghost = f"ghost{os.getpid()}"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=_read_policy(bucket, ghost, "Deny"))
    error = exc.value.response["Error"]
    assert error["Code"] == "MalformedPolicy"
    assert f"user/{ghost}" in error["Message"]
    assert _code(lambda: s3.get_bucket_policy(Bucket=bucket)) == "NoSuchBucketPolicy"


def test_a_policy_stored_before_bindings_still_names_users_by_name() -> None:
    bob_id, other_id = "b" * 64, "c" * 64
    policy = _read_policy("bk", "bob")
    ctx = context(datetime.now(UTC), None, False)

    def allowed(settings: dict[str, Any], canonical_id: str) -> bool:
        bucket = Bucket("bk", "a" * 64, 0.0, "us-east-1", policy=policy, settings=settings)
        principal = Principal.user(canonical_id, "bob")
        return may(principal, "s3:GetObject", bucket, "k", None, ctx).allowed

    assert allowed({}, bob_id) and allowed({}, other_id)
    bound = {POLICY_USERS: {"bob": bob_id}}
    assert allowed(bound, bob_id)
    assert not allowed(bound, other_id)
